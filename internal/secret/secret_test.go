package secret

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const canary = "s3cr3t-canary-value-0123456789"

func TestSecretNeverPrints(t *testing.T) {
	s := New(canary)
	type holder struct {
		Name   string
		Secret Secret
		Ptr    *Secret
	}
	h := holder{Name: "x", Secret: s, Ptr: &s}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
		outs = append(outs, fmt.Sprintf(verb, s), fmt.Sprintf(verb, h))
	}
	outs = append(outs, fmt.Sprint(s), fmt.Sprintln(s), s.String(), s.GoString())
	j, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(j))
	x, err := xml.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(x))
	tx, _ := s.MarshalText()
	outs = append(outs, string(tx))
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Debug("secret", "s", s, "holder", h, "any", any(s))
	slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).Debug("secret", "s", s)
	outs = append(outs, buf.String())
	for _, o := range outs {
		if strings.Contains(o, canary) || strings.Contains(o, fmt.Sprintf("%x", canary)) {
			t.Fatalf("secret leaked: %s", o)
		}
	}
	if s.Reveal() != canary {
		t.Fatal("Reveal must return the value")
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key"), []byte(canary+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GATEHOUSE_TEST_SECRET", canary)
	tests := []struct {
		name, ref string
		want      string
		errHas    string
	}{
		{"literal", "plain", "plain", ""},
		{"env", "${env:GATEHOUSE_TEST_SECRET}", canary, ""},
		{"missing env", "${env:GATEHOUSE_TEST_NOPE}", "", "GATEHOUSE_TEST_NOPE is not set"},
		{"relative file", "${file:key}", canary, ""},
		{"absolute file", "${file:" + filepath.Join(dir, "key") + "}", canary, ""},
		{"missing file", "${file:nope}", "", "no such file"},
		{"empty env name", "${env:}", "", "names no environment variable"},
		{"endless file", "${file:/dev/zero}", "", "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Resolve(tt.ref, dir)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("want error containing %q, got %v", tt.errHas, err)
				}
				if strings.Contains(err.Error(), canary) {
					t.Fatal("error leaks the secret")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := v.Get().Reveal(); got != tt.want {
				t.Fatalf("got %q want %q", got, tt.want)
			}
		})
	}
}

// Rotation as Kubernetes does it: the mounted path is a symlink that is swapped
// atomically to a new target. Watch must pick up the new value with no restart.
func TestFileSecretRotatesWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	write := func(name, val string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(val), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("v1", "first-value-aaaaaaaa")
	write("v2", "second-value-bbbbbbb")
	link := filepath.Join(dir, "current")
	if err := os.Symlink(filepath.Join(dir, "v1"), link); err != nil {
		t.Fatal(err)
	}
	v, err := Resolve("${file:"+link+"}", dir)
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan struct{}, 4)
	v.OnChange(func() { changed <- struct{}{} })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var reports []string
	go Watch(ctx, 5*time.Millisecond, []*Value{v}, func(src string, ch bool, err error) {
		mu.Lock()
		reports = append(reports, fmt.Sprint(src, ch, err))
		mu.Unlock()
	})
	if v.Get().Reveal() != "first-value-aaaaaaaa" {
		t.Fatal("initial value")
	}
	// Atomic symlink swap.
	tmp := filepath.Join(dir, "current.tmp")
	if err := os.Symlink(filepath.Join(dir, "v2"), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("rotation not observed")
	}
	if got := v.Get().Reveal(); got != "second-value-bbbbbbb" {
		t.Fatalf("after rotation got %q", got)
	}
	// Replacement by rename of a regular file.
	write("next", "third-value-ccccccccc")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "next"), link); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("second rotation not observed")
	}
	if got := v.Get().Reveal(); got != "third-value-ccccccccc" {
		t.Fatalf("after rename got %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range reports {
		if strings.Contains(r, "value-") {
			t.Fatalf("report leaks a value: %s", r)
		}
	}
}

func TestReloadKeepsOldValueWhenFileVanishes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	if err := os.WriteFile(p, []byte("value-one-xxxxxxxx"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := Resolve("${file:k}", dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Reload(); err == nil {
		t.Fatal("want error for vanished file")
	}
	if v.Get().Reveal() != "value-one-xxxxxxxx" {
		t.Fatal("old value must stay in force")
	}
	if err := os.WriteFile(p, []byte(""), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Reload(); err == nil {
		t.Fatal("want error for empty file")
	}
	if v.Get().Reveal() != "value-one-xxxxxxxx" {
		t.Fatal("old value must stay in force on empty file")
	}
}

func TestKeyRingRotation(t *testing.T) {
	oldKey := New("old-key-0123456789abcdef")
	newKey := New("new-key-0123456789abcdef")
	before, err := NewKeyRing(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	sealed := before.Seal([]byte("payload"), []byte("aad"))
	after, err := NewKeyRing(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := after.Open(sealed, []byte("aad"))
	if err != nil || string(pt) != "payload" {
		t.Fatalf("old ciphertext must open under the rotated ring: %v", err)
	}
	fresh := after.Seal([]byte("payload2"), nil)
	if _, err := before.Open(fresh, nil); !errors.Is(err, ErrDecrypt) {
		t.Fatal("new key's ciphertext must not open without it")
	}
	onlyNew, _ := NewKeyRing(newKey)
	if _, err := onlyNew.Open(sealed, []byte("aad")); !errors.Is(err, ErrDecrypt) {
		t.Fatal("removed key must no longer open")
	}
}

func TestKeyRingRejectsTamperingAndShortKeys(t *testing.T) {
	kr := RandomKeyRing()
	ct := kr.Seal([]byte("hello"), []byte("bound"))
	cases := map[string]func() ([]byte, []byte){
		"flipped byte": func() ([]byte, []byte) { c := bytes.Clone(ct); c[len(c)-1] ^= 1; return c, []byte("bound") },
		"wrong aad":    func() ([]byte, []byte) { return ct, []byte("other") },
		"truncated":    func() ([]byte, []byte) { return ct[:10], []byte("bound") },
		"empty":        func() ([]byte, []byte) { return nil, []byte("bound") },
	}
	for name, f := range cases {
		c, aad := f()
		if _, err := kr.Open(c, aad); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: want ErrDecrypt, got %v", name, err)
		}
	}
	if _, err := NewKeyRing(New("short")); err == nil {
		t.Fatal("short key must be rejected")
	}
	if _, err := NewKeyRing(); err == nil {
		t.Fatal("empty ring must be rejected")
	}
}

func FuzzKeyRingOpen(f *testing.F) {
	kr := RandomKeyRing()
	f.Add(kr.Seal([]byte("x"), nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = kr.Open(b, nil) // must never panic
	})
}

// Replace rotates the keys for every holder of the ring at once; a bad key
// set leaves the ring as it was.
func TestKeyRingReplaceRotatesInPlace(t *testing.T) {
	kr, err := NewKeyRing(New("first-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	old := kr.Seal([]byte("x"), nil)
	if err := kr.Replace(New("short")); err == nil {
		t.Fatal("a short key must be refused")
	}
	if _, err := kr.Open(old, nil); err != nil {
		t.Fatal("a refused Replace must keep the old keys")
	}
	if err := kr.Replace(New("second-key-0123456789"), New("first-key-0123456789")); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Open(old, nil); err != nil {
		t.Fatal("the old key still opens after rotation")
	}
	fresh := kr.Seal([]byte("y"), nil)
	onlyFirst, _ := NewKeyRing(New("first-key-0123456789"))
	if _, err := onlyFirst.Open(fresh, nil); !errors.Is(err, ErrDecrypt) {
		t.Fatal("after rotation the new key seals")
	}
}
