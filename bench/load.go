package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"
)

// request describes one request of a workload; the generator turns it into
// an *http.Request for whichever target is measured.
type request struct {
	method string
	path   string
	cookie string
	auth   string // Authorization header (agent tokens, native handles)
	dpop   string // DPoP proof header
	body   []byte
	// fanout, when set, replaces the request: its requests are sent in parallel
	// (as a SPA fans out without a composite) and count as one, as slow as the
	// slowest.
	fanout []request
}

// workload picks the next request for a worker.
type workload func(rnd *rand.Rand) request

// round is one measured period against one target.
type round struct {
	target                  string
	requests, errors, non2x int64
	elapsed                 time.Duration
	latencies               []time.Duration
	upConns, upReqs         int64
	before, after           procStats
	// wrk reports percentiles, not samples.
	wrkP50, wrkP99, wrkP999 float64
}

// drive runs a closed loop of conns workers against base for d and returns
// what it measured. Every worker has its own connection (MaxConnsPerHost).
func drive(ctx context.Context, e *environment, target *child, conns int, d time.Duration, w workload) (round, error) {
	tr := &http.Transport{MaxIdleConns: conns * 2, MaxIdleConnsPerHost: conns * 2, MaxConnsPerHost: conns * maxFanout, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	// Warm up: connections open, caches filled, JIT-free but GC settled.
	warm, cancelWarm := context.WithTimeout(ctx, 500*time.Millisecond)
	_ = loop(warm, client, target.url, conns, w, nil)
	cancelWarm()

	before, err := scrape(ctx, target.metrics)
	if err != nil {
		return round{}, fmt.Errorf("metrics of %s: %w", target.name, err)
	}
	upC, upR := e.upstream.conns.Load(), e.upstream.reqs.Load()
	runCtx, cancel := context.WithTimeout(ctx, d)
	start := time.Now()
	r := round{target: target.name}
	lats := loop(runCtx, client, target.url, conns, w, &r)
	r.elapsed = time.Since(start)
	cancel()
	r.upConns, r.upReqs = e.upstream.conns.Load()-upC, e.upstream.reqs.Load()-upR
	if r.after, err = scrape(ctx, target.metrics); err != nil {
		return round{}, fmt.Errorf("metrics of %s: %w", target.name, err)
	}
	r.before = before
	r.latencies = lats
	return r, ctx.Err()
}

func newRequest(base string, q request) *http.Request {
	var body io.Reader
	if q.body != nil {
		body = bytes.NewReader(q.body)
	}
	req, _ := http.NewRequest(q.method, base+q.path, body)
	req.Header.Set("X-CSRF", "1")
	if q.cookie != "" {
		req.Header.Set("Cookie", q.cookie)
	}
	if q.auth != "" {
		req.Header.Set("Authorization", q.auth)
	}
	if q.dpop != "" {
		req.Header.Set("Dpop", q.dpop)
	}
	if q.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// driveOpen offers a fixed rate of requests for d (open loop): request i is
// due at start + i/rate whatever happened to earlier ones, and its latency
// is counted from when it was due, so a stall shows up in the percentiles
// instead of silently lowering the load (no coordinated omission).
func driveOpen(ctx context.Context, e *environment, target *child, rate float64, d time.Duration, w workload) (round, error) {
	const workers = 256 // enough to keep the schedule through a stall
	tr := &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	warm, cancelWarm := context.WithTimeout(ctx, 500*time.Millisecond)
	_ = loop(warm, client, target.url, 8, w, nil)
	cancelWarm()

	before, err := scrape(ctx, target.metrics)
	if err != nil {
		return round{}, fmt.Errorf("metrics of %s: %w", target.name, err)
	}
	upC, upR := e.upstream.conns.Load(), e.upstream.reqs.Load()
	due := make(chan time.Time, workers)
	results := make([]workerResult, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i)+1, 11))
			res := &results[i]
			for t := range due {
				resp, err := client.Do(newRequest(target.url, w(rnd)))
				if err != nil {
					res.errors++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				res.lats = append(res.lats, time.Since(t))
				res.requests++
				if resp.StatusCode/100 != 2 {
					res.non2x++
				}
			}
		})
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	n := int(d / interval)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		due <- at
	}
	close(due)
	wg.Wait()
	r := round{target: target.name, elapsed: time.Since(start)}
	r.upConns, r.upReqs = e.upstream.conns.Load()-upC, e.upstream.reqs.Load()-upR
	for _, res := range results {
		r.latencies = append(r.latencies, res.lats...)
		r.requests += res.requests
		r.errors += res.errors
		r.non2x += res.non2x
	}
	r.before = before
	if r.after, err = scrape(ctx, target.metrics); err != nil {
		return round{}, fmt.Errorf("metrics of %s: %w", target.name, err)
	}
	return r, ctx.Err()
}

type workerResult struct {
	lats                    []time.Duration
	requests, errors, non2x int64
}

func loop(ctx context.Context, client *http.Client, base string, conns int, w workload, r *round) []time.Duration {
	results := make([]workerResult, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i)+1, 7))
			res := &results[i]
			res.lats = make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil {
				q := w(rnd)
				t0 := time.Now()
				status, err := do(client, base, q)
				if err != nil {
					if ctx.Err() == nil {
						res.errors++
					}
					continue
				}
				if ctx.Err() != nil {
					break // the round ended mid-request: not counted
				}
				res.lats = append(res.lats, time.Since(t0))
				res.requests++
				if status/100 != 2 {
					res.non2x++
				}
			}
		})
	}
	wg.Wait()
	var all []time.Duration
	for _, res := range results {
		all = append(all, res.lats...)
		if r != nil {
			r.requests += res.requests
			r.errors += res.errors
			r.non2x += res.non2x
		}
	}
	return all
}

// maxFanout is the most requests a fanout sends at once.
const maxFanout = 3

// do sends q (or its fanout, in parallel) and reads the answer; the status is
// the first non-2xx one, or 200.
func do(client *http.Client, base string, q request) (int, error) {
	if len(q.fanout) == 0 {
		resp, err := client.Do(newRequest(base, q))
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	type answer struct {
		status int
		err    error
	}
	ch := make(chan answer, len(q.fanout))
	for _, f := range q.fanout {
		go func() {
			s, err := do(client, base, f)
			ch <- answer{s, err}
		}()
	}
	status, err := http.StatusOK, error(nil)
	for range q.fanout {
		a := <-ch
		if a.err != nil && err == nil {
			err = a.err
		}
		if a.status/100 != 2 && status == http.StatusOK {
			status = a.status
		}
	}
	return status, err
}

// summary merges a target's rounds.
type summary struct {
	Target       string    `json:"target"`
	Requests     int64     `json:"requests"`
	Errors       int64     `json:"errors"`
	Non2xx       int64     `json:"non_2xx"`
	RPS          float64   `json:"requests_per_second"`
	P50us        float64   `json:"p50_us"`
	P99us        float64   `json:"p99_us"`
	P999us       float64   `json:"p999_us"`
	CPUusPerReq  float64   `json:"cpu_us_per_request"`
	AllocsPerReq float64   `json:"allocs_per_request"`
	ReqPerUpConn float64   `json:"requests_per_upstream_connection"`
	RSSBytes     float64   `json:"rss_bytes"`
	Goroutines   float64   `json:"goroutines"`
	RoundsRPS    []float64 `json:"rounds_rps"`
	AuditSyncs   float64   `json:"audit_syncs,omitempty"` // fsyncs of the audit file during the rounds
	latencies    []time.Duration
}

func summarize(target string, rounds []round) summary {
	s := summary{Target: target}
	var elapsed time.Duration
	var cpu, mallocs float64
	var upConns, upReqs int64
	for _, r := range rounds {
		s.Requests += r.requests
		s.Errors += r.errors
		s.Non2xx += r.non2x
		elapsed += r.elapsed
		cpu += r.after.cpuSeconds - r.before.cpuSeconds
		mallocs += r.after.mallocs - r.before.mallocs
		s.AuditSyncs += r.after.auditSyncs - r.before.auditSyncs
		upConns += r.upConns
		upReqs += r.upReqs
		s.latencies = append(s.latencies, r.latencies...)
		s.RSSBytes = r.after.rss
		s.Goroutines = r.after.goroutines
		s.RoundsRPS = append(s.RoundsRPS, float64(r.requests)/r.elapsed.Seconds())
	}
	if s.Requests == 0 {
		return s
	}
	s.RPS = float64(s.Requests) / elapsed.Seconds()
	slices.Sort(s.latencies)
	s.P50us = pct(s.latencies, 0.50)
	s.P99us = pct(s.latencies, 0.99)
	s.P999us = pct(s.latencies, 0.999)
	if len(s.latencies) == 0 {
		// wrk rounds: the worst round's percentiles.
		for _, r := range rounds {
			s.P50us, s.P99us, s.P999us = max(s.P50us, r.wrkP50), max(s.P99us, r.wrkP99), max(s.P999us, r.wrkP999)
		}
	}
	s.CPUusPerReq = cpu * 1e6 / float64(s.Requests)
	s.AllocsPerReq = mallocs / float64(s.Requests)
	if upConns > 0 {
		s.ReqPerUpConn = float64(upReqs) / float64(upConns)
	}
	return s
}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return float64(sorted[i]) / float64(time.Microsecond)
}

func runtimeCPUs() int { return runtime.NumCPU() }

// profileRound runs one more closed-loop round against Gatehouse (not
// counted) while fetching its CPU profile and the allocations made during
// the round from /admin/debug/pprof/, and saves both under -profile as
// <scenario>-cpu.pb.gz and <scenario>-allocs.pb.gz (go tool pprof reads them).
func (e *environment) profileRound(ctx context.Context, name string, gh *child, w workload) error {
	if err := os.MkdirAll(e.f.profile, 0o755); err != nil {
		return err
	}
	secs := max(1, int(e.f.duration/time.Second))
	fetch := func(kind, query string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gh.admin+"/admin/debug/pprof/"+kind+"?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return fmt.Errorf("%s profile: %d %s", kind, resp.StatusCode, b)
		}
		f, err := os.Create(filepath.Join(e.f.profile, name+"-"+kind+".pb.gz"))
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	errs := make(chan error, 2)
	go func() { errs <- fetch("profile", fmt.Sprintf("seconds=%d", secs)) }()
	go func() { errs <- fetch("allocs", fmt.Sprintf("seconds=%d", secs)) }()
	if _, err := drive(ctx, e, gh, e.f.conns, time.Duration(secs)*time.Second+time.Second, w); err != nil {
		return err
	}
	return errors.Join(<-errs, <-errs)
}
