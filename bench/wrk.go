package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkScript sets the session cookie and the CSRF header on every request
// and prints the latency percentiles (µs) and the counts in a form
// wrkRound parses.
const wrkScript = `
wrk.headers["X-CSRF"] = "1"
local cookie = os.getenv("BENCH_COOKIE")
if cookie and cookie ~= "" then wrk.headers["Cookie"] = cookie end
done = function(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("BENCH %d %d %d %d %d %d\n", summary.requests, summary.duration, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
  io.write(string.format("BENCH999 %d\n", latency:percentile(99.9)))
end
`

// wrkRound drives target with wrk (one thread per core, conns connections)
// for d: the closed-loop load of an external generator, for comparison with
// the Go one. Only single-path GET workloads are driven this way.
func wrkRound(ctx context.Context, e *environment, target *child, conns int, d time.Duration, path, cookie string) (round, error) {
	script := filepath.Join(e.dir, "bench.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return round{}, err
	}
	run := func(dur time.Duration) ([]byte, error) {
		cmd := exec.CommandContext(ctx, e.wrk, "-t", strconv.Itoa(max(1, runtimeCPUs())), "-c", strconv.Itoa(conns),
			"-d", fmt.Sprintf("%ds", max(1, int(dur/time.Second))), "-s", script, target.url+path)
		cmd.Env = append(os.Environ(), "BENCH_COOKIE="+cookie)
		return cmd.CombinedOutput()
	}
	if _, err := run(time.Second); err != nil { // warm-up
		return round{}, fmt.Errorf("wrk: %w", err)
	}
	before, err := scrape(ctx, target.metrics)
	if err != nil {
		return round{}, err
	}
	upC, upR := e.upstream.conns.Load(), e.upstream.reqs.Load()
	out, err := run(d)
	if err != nil {
		return round{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	r := round{target: target.name, before: before}
	r.upConns, r.upReqs = e.upstream.conns.Load()-upC, e.upstream.reqs.Load()-upR
	sc := bufio.NewScanner(bytes.NewReader(out))
	found := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 7 && f[0] == "BENCH":
			v := make([]int64, 6)
			for i := range v {
				v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
			}
			r.requests, r.elapsed, r.non2x, r.errors = v[0], time.Duration(v[1])*time.Microsecond, v[2], v[3]
			r.wrkP50, r.wrkP99 = float64(v[4]), float64(v[5])
			found = true
		case len(f) == 2 && f[0] == "BENCH999":
			r.wrkP999, _ = strconv.ParseFloat(f[1], 64)
		}
	}
	if !found {
		return round{}, fmt.Errorf("wrk printed no summary:\n%s", out)
	}
	if r.after, err = scrape(ctx, target.metrics); err != nil {
		return round{}, err
	}
	return r, ctx.Err()
}
