package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Rotating the API-key file (written atomically: temp file + rename, as
// secret managers and Kubernetes do) while 8 clients hammer a header route
// switches the header the upstream receives, with zero failed requests and
// never an empty, partial or mixed key.
func TestProxyAPIKeyFileRotationUnderLoadLosesNoRequest(t *testing.T) {
	verifyNoLeaks(t)
	up := newRecorder(t, nil)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "api-key")
	keys := []string{"api-key-version-1", "api-key-version-2", "api-key-version-3"}
	rotate := func(v string) {
		tmp := filepath.Join(dir, ".api-key.tmp")
		if err := os.WriteFile(tmp, []byte(v+"\n"), 0o600); err != nil {
			t.Error(err)
			return
		}
		if err := os.Rename(tmp, keyFile); err != nil {
			t.Error(err)
		}
	}
	rotate(keys[0])
	e := startGW(t, gwOptions{Dir: dir, Config: `
session:
  store: memory
routes:
  - name: weather
    path: /api/weather/
    upstream: "` + up.URL + `/"
    credential:
      header:
        name: X-Api-Key
        value: ${file:api-key}
# A load test from one session: its budget must not be what fails requests.
rate_limits:
  default: { requests: 1000000, per: 1m }
`})
	b := e.login("alice", "wonderland")

	const workers = 8
	var (
		failures atomic.Int64
		total    atomic.Int64
		firstErr sync.Once
		errMsg   string
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/weather/w%d/%06d", e.URL, w, seq), nil)
				req.Header.Set("X-CSRF", "1")
				res, err := b.Do(req)
				total.Add(1)
				if err != nil {
					failures.Add(1)
					firstErr.Do(func() { errMsg = err.Error() })
					continue
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					failures.Add(1)
					firstErr.Do(func() { errMsg = fmt.Sprintf("%d %s", res.StatusCode, body) })
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	rotate(keys[1])
	time.Sleep(350 * time.Millisecond)
	rotate(keys[2])
	time.Sleep(350 * time.Millisecond)
	close(stop)
	wg.Wait()

	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during rotation; first: %s", n, total.Load(), errMsg)
	}
	reqs := up.requests()
	if int64(len(reqs)) != total.Load() {
		t.Fatalf("upstream received %d requests, clients sent %d", len(reqs), total.Load())
	}
	// Every request carried exactly one whole key; each worker's keys only
	// move forward (its requests are sequential); every version was used.
	version := map[string]int{keys[0]: 0, keys[1]: 1, keys[2]: 2}
	seen := map[int]int{}
	last := map[string]int{}
	for _, rq := range reqs {
		vs := rq.Header.Values("X-Api-Key")
		if len(vs) != 1 {
			t.Fatalf("request %s carried %d X-Api-Key values", rq.Path, len(vs))
		}
		v, ok := version[vs[0]]
		if !ok {
			t.Fatalf("request %s carried a key that was never in the file (len %d)", rq.Path, len(vs[0]))
		}
		seen[v]++
		parts := strings.Split(rq.Path, "/") // "", "wN", "seq"
		worker := parts[1]
		if seq, _ := strconv.Atoi(parts[2]); seq > 0 && v < last[worker] {
			t.Fatalf("worker %s went back from key version %d to %d", worker, last[worker]+1, v+1)
		}
		last[worker] = v
	}
	for v := range keys {
		if seen[v] == 0 {
			t.Fatalf("no request carried key version %d (counts %v)", v+1, seen)
		}
	}
	t.Logf("%d requests, zero failures, per key version %v", len(reqs), seen)

	// After the load the newest key is the one in use.
	up.reset()
	if code, body := e.api(b, "GET", "/api/weather/after", nil); code != 200 {
		t.Fatalf("after rotation: %d %s", code, body)
	}
	if got := up.last(t).Header.Get("X-Api-Key"); got != keys[2] {
		t.Fatal("the request after rotation did not carry the newest key")
	}
}
