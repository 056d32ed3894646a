package secret

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Value is a secret whose current value can change while the process runs:
// a file reference is re-read when the file changes (including replacement by
// rename or symlink swap, as Kubernetes secret mounts do). Callers call Get on
// every use and so always see the current value. A nil *Value yields the
// zero Secret.
type Value struct {
	source string // "literal", "env:NAME" or "file:/abs/path"; never the value
	path   string // for file sources
	cur    atomic.Pointer[Secret]

	mu       sync.Mutex
	onChange []func()
}

// Static returns a Value that never changes.
func Static(s string) *Value {
	v := &Value{source: "literal"}
	sec := New(s)
	v.cur.Store(&sec)
	return v
}

// ErrNotReference is returned by Parse for a string that is not a reference.
var ErrNotReference = errors.New("not a secret reference")

// IsReference reports whether s has the ${env:…} or ${file:…} form.
func IsReference(s string) bool {
	return strings.HasPrefix(s, "${") && strings.HasSuffix(s, "}") &&
		(strings.HasPrefix(s, "${env:") || strings.HasPrefix(s, "${file:"))
}

// Resolve turns s into a Value. A ${env:NAME} reference reads the environment
// variable once (environment variables cannot change under a running process);
// a ${file:PATH} reference reads the file now and again whenever Watch sees it
// change; relative paths resolve against baseDir. Any other string is a literal.
// Errors name the reference, never a value.
func Resolve(s, baseDir string) (*Value, error) {
	if !IsReference(s) {
		return Static(s), nil
	}
	inner := s[2 : len(s)-1]
	switch {
	case strings.HasPrefix(inner, "env:"):
		name := strings.TrimPrefix(inner, "env:")
		if name == "" {
			return nil, fmt.Errorf("secret reference %q names no environment variable", s)
		}
		val, ok := os.LookupEnv(name)
		if !ok {
			return nil, fmt.Errorf("environment variable %s is not set (referenced as %s): set it or change the reference", name, s)
		}
		if val == "" {
			return nil, fmt.Errorf("environment variable %s is empty (referenced as %s): a secret must not be empty", name, s)
		}
		v := &Value{source: "env:" + name}
		sec := New(val)
		v.cur.Store(&sec)
		return v, nil
	case strings.HasPrefix(inner, "file:"):
		p := strings.TrimPrefix(inner, "file:")
		if p == "" {
			return nil, fmt.Errorf("secret reference %q names no file", s)
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(baseDir, p)
		}
		v := &Value{source: "file:" + p, path: p}
		sec, err := readSecretFile(p)
		if err != nil {
			return nil, err
		}
		v.cur.Store(&sec)
		return v, nil
	}
	return nil, fmt.Errorf("secret reference %q: use ${env:NAME} or ${file:/path}", s)
}

// maxSecretFile bounds what a secret file may hold: a key or a token is at
// most a few KiB, and a reference to /dev/zero or a log file must fail rather
// than exhaust memory.
const maxSecretFile = 64 << 10

func readSecretFile(p string) (Secret, error) {
	f, err := os.Open(p)
	if err != nil {
		// The os error names the path and the cause, never file content.
		return Secret{}, fmt.Errorf("read secret file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return Secret{}, fmt.Errorf("read secret file: %w", err)
	}
	if len(b) > maxSecretFile {
		return Secret{}, fmt.Errorf("secret file %s is larger than %d bytes: point the reference at the file holding only the secret", p, maxSecretFile)
	}
	// Secret files written by hand or by `echo` end in a newline that is never
	// part of the secret.
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return Secret{}, fmt.Errorf("secret file %s is empty", p)
	}
	return New(string(b)), nil
}

// Get returns the current value.
func (v *Value) Get() Secret {
	if v == nil {
		return Secret{}
	}
	if p := v.cur.Load(); p != nil {
		return *p
	}
	return Secret{}
}

// Source describes where the value comes from ("literal", "env:NAME",
// "file:/path"), for logs and audit records. It never includes the value.
func (v *Value) Source() string {
	if v == nil {
		return ""
	}
	return v.source
}

// Reloadable reports whether the value can change (file-backed).
func (v *Value) Reloadable() bool { return v != nil && v.path != "" }

// OnChange registers fn to run after each change of the value.
func (v *Value) OnChange(fn func()) {
	v.mu.Lock()
	v.onChange = append(v.onChange, fn)
	v.mu.Unlock()
}

// Reload re-reads a file-backed value now. It reports whether the value
// changed. On a read error the previous value stays in force: a secret being
// replaced non-atomically must not turn into an empty credential.
func (v *Value) Reload() (bool, error) {
	if !v.Reloadable() {
		return false, nil
	}
	sec, err := readSecretFile(v.path)
	if err != nil {
		return false, err
	}
	if old := v.cur.Load(); old != nil && old.Equal(sec) {
		return false, nil
	}
	v.cur.Store(&sec)
	v.mu.Lock()
	fns := append([]func(){}, v.onChange...)
	v.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
	return true, nil
}

// Watch polls file-backed values every interval until ctx ends and reloads
// those that changed. Polling (rather than inotify) is deliberate: it sees
// rename and symlink swaps the same way, works on every filesystem, and a
// secret file is a few bytes. report, when not nil, is told of each change and
// each read error (by source, never by value).
func Watch(ctx context.Context, interval time.Duration, values []*Value, report func(source string, changed bool, err error)) {
	var files []*Value
	for _, v := range values {
		if v.Reloadable() {
			files = append(files, v)
		}
	}
	if len(files) == 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, v := range files {
				changed, err := v.Reload()
				if report != nil && (changed || err != nil) {
					report(v.source, changed, err)
				}
			}
		}
	}
}
