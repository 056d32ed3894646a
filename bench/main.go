// Command bench is Gatehouse's load benchmark: it runs the real gatehouse
// binary and a bare httputil.ReverseProxy (pooled like Gatehouse's) as
// separate processes in front of the same fast upstream, drives both with the
// same closed-loop load in alternating rounds, and prints requests/s,
// latency percentiles, CPU and allocations per request (read from each
// process's own Prometheus metrics), requests per upstream connection, and
// the ratio to the bare proxy in the same run.
//
//	go run ./bench                       # every scenario, about 4 minutes on 2 cores
//	go run ./bench -only get-bolt -rounds 3 -duration 5s -json out.json
//
// Results and the method are written up in docs/performance.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type flags struct {
	duration     time.Duration
	rounds       int
	conns        int
	only         string
	jsonOut      string
	sessions     int
	stored       int
	profile      string
	loadFraction float64
	verbose      bool
	useWrk       bool
}

func main() {
	role := flag.String("role", "", "internal: run as the bare proxy child (bare)")
	upstreamURL := flag.String("upstream", "", "internal: the bare proxy's upstream")
	listen := flag.String("listen", "", "internal: the bare proxy's address")
	stats := flag.String("stats", "", "internal: the bare proxy's metrics address")
	var f flags
	flag.DurationVar(&f.duration, "duration", 3*time.Second, "length of one measured round")
	flag.IntVar(&f.rounds, "rounds", 2, "rounds per target (alternating bare, gatehouse)")
	flag.IntVar(&f.conns, "conns", 32, "concurrent connections (closed loop)")
	flag.StringVar(&f.only, "only", "", "comma-separated scenario names to run (default: all but get-bolt-many-cached)")
	flag.StringVar(&f.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.IntVar(&f.sessions, "sessions", 100_000, "sessions in the many-sessions scenario")
	flag.IntVar(&f.stored, "stored-sessions", 200_000, "sessions in the stored-sessions scenario (the issue's figure is 1000000: about 4 minutes more to seed)")
	flag.StringVar(&f.profile, "profile", "", "after each side-by-side scenario, run one more Gatehouse round and save its CPU and allocation profiles in this directory")
	flag.Float64Var(&f.loadFraction, "half-peak-fraction", 0.5, "the half-peak scenario's offered load as a fraction of the lower closed-loop peak")
	flag.BoolVar(&f.useWrk, "wrk", false, "drive the single-path GET scenarios (get-bolt, get-redis) with wrk instead of the Go generator, when wrk is installed")
	flag.BoolVar(&f.verbose, "v", false, "print progress and the children's logs")
	flag.Parse()

	if *role == "bare" {
		if err := runBare(*upstreamURL, *listen, *stats); err != nil {
			fmt.Fprintln(os.Stderr, "bench bare proxy:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, f flags) error {
	raiseFileLimit()
	work, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	env := &environment{f: f, dir: work, log: slog.New(slog.DiscardHandler)}
	if f.verbose {
		env.log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	fmt.Fprintf(os.Stderr, "building gatehouse ... ")
	if env.gatehouseBin, err = buildGatehouse(ctx, work); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "done")
	if env.self, err = os.Executable(); err != nil {
		return err
	}
	if f.useWrk {
		if env.wrk, err = exec.LookPath("wrk"); err != nil {
			fmt.Fprintln(os.Stderr, "wrk is not installed (apt-get install wrk): using the Go generator")
			env.wrk = ""
		}
	}
	if err := env.startShared(ctx); err != nil {
		return err
	}
	defer env.close()

	var selected []scenario
	for _, s := range scenarios() {
		if (f.only == "" && !optIn(s.name)) || slices.Contains(strings.Split(f.only, ","), s.name) {
			selected = append(selected, s)
		}
	}
	if len(selected) == 0 {
		return fmt.Errorf("no scenario matches -only %q", f.only)
	}
	var results []result
	began := time.Now()
	for _, s := range selected {
		fmt.Fprintf(os.Stderr, "scenario %s ... ", s.name)
		t0 := time.Now()
		rs, err := s.run(ctx, env)
		fmt.Fprintf(os.Stderr, "%.0f s\n", time.Since(t0).Seconds())
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s.name, err)
		}
		results = append(results, rs...)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	printTable(os.Stdout, f, results)
	fmt.Fprintf(os.Stderr, "scenarios took %.0f s\n", time.Since(began).Seconds())
	if f.jsonOut != "" {
		b, _ := json.MarshalIndent(report{Machine: machine(), Flags: flagMap(f), Results: results}, "", "  ")
		if err := os.WriteFile(f.jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// buildGatehouse compiles the real binary once, so what is measured is what
// users run (no test binary, no race detector).
func buildGatehouse(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "gatehouse")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/gatehouse")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/gatehouse: %w", err)
	}
	return bin, nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the benchmark from inside the gatehouse module (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}

// runBare is the baseline: httputil.ReverseProxy with a transport pooled for
// the load (as Gatehouse's routes are), no checks, and the same Go and
// process collectors Gatehouse exposes, so CPU and allocations are read the
// same way.
func runBare(upstream, listen, stats string) error {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bad -upstream %q", upstream)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 256
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }, Transport: tr}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sl, err := net.Listen("tcp", stats)
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(sl, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})) }()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// raiseFileLimit lifts the soft descriptor limit to the hard one: the
// idle-connection scenario holds thousands of sockets.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitHTTP polls u until it answers 200.
func waitHTTP(ctx context.Context, u string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s answered %d", u, resp.StatusCode)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("not ready after %s: %w", limit, last)
}

func machine() map[string]any {
	host, _ := os.Hostname()
	return map[string]any{"goos": runtime.GOOS, "goarch": runtime.GOARCH, "cpus": runtime.NumCPU(), "go": runtime.Version(), "host": host,
		"date": time.Now().UTC().Format(time.RFC3339)}
}
