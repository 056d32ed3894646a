package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/telemetry"
)

// drainTimeout bounds how long a replaced configuration keeps serving the
// requests that started on it (long streams and WebSockets included).
const drainTimeout = 30 * time.Second

// maxReportedProblems bounds the problems /readyz shows for a rejected reload.
const maxReportedProblems = 20

// reloadState is the reload bookkeeping: one reload at a time, the loaded
// configuration's hash and the last reload's outcome (for /readyz and the
// metrics).
type reloadState struct {
	mu       sync.Mutex // serialises reloads, and Run's final close against them
	bg       context.Context
	stopped  bool
	retiring sync.WaitGroup

	st           sync.Mutex // guards the fields below
	hash         string
	loadedAt     time.Time
	outcome      string // "none", "success", "rejected"
	outcomeAt    time.Time
	problems     []string
	rejectedHash string // the last rejected file, so that polling does not retry it

	info     *prometheus.GaugeVec
	reloads  *prometheus.CounterVec
	lastOK   prometheus.Gauge
	loadedTS prometheus.Gauge
}

func (r *reloadState) init(m *telemetry.Metrics) {
	r.outcome = "none"
	r.info = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gatehouse_config_info",
		Help: "The loaded configuration: 1 for the SHA-256 (hex) of the file in force."}, []string{"hash"})
	r.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_config_reloads_total",
		Help: "Configuration reloads by outcome (success, rejected)."}, []string{"outcome"})
	r.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_config_last_reload_successful",
		Help: "1 if the last reload (or the start) succeeded, 0 if the last reload was rejected."})
	r.loadedTS = prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_config_loaded_timestamp_seconds",
		Help: "When the configuration in force was loaded (Unix time)."})
	m.Registry().MustRegister(r.info, r.reloads, r.lastOK, r.loadedTS)
	r.lastOK.Set(1)
}

func (r *reloadState) loaded(hash string, now time.Time) {
	r.st.Lock()
	defer r.st.Unlock()
	if r.hash != "" {
		r.info.DeleteLabelValues(r.hash)
	}
	r.hash, r.loadedAt = hash, now
	r.info.WithLabelValues(hash).Set(1)
	r.loadedTS.Set(float64(now.Unix()))
}

func (r *reloadState) result(outcome string, now time.Time, problems []string, rejectedHash string) {
	r.st.Lock()
	defer r.st.Unlock()
	r.outcome, r.outcomeAt, r.problems = outcome, now, problems
	r.reloads.WithLabelValues(outcome).Inc()
	if outcome == "success" {
		r.lastOK.Set(1)
		r.rejectedHash = ""
	} else {
		r.lastOK.Set(0)
		r.rejectedHash = rejectedHash
	}
}

// status is /readyz's view of the configuration.
func (r *reloadState) status() map[string]any {
	r.st.Lock()
	defer r.st.Unlock()
	last := map[string]any{"outcome": r.outcome}
	if !r.outcomeAt.IsZero() {
		last["at"] = r.outcomeAt.UTC()
	}
	if len(r.problems) > 0 {
		last["problems"] = r.problems
	}
	return map[string]any{
		"config":      map[string]any{"hash": r.hash, "loaded_at": r.loadedAt.UTC()},
		"last_reload": last,
	}
}

func (r *reloadState) current() (hash, rejected string) {
	r.st.Lock()
	defer r.st.Unlock()
	return r.hash, r.rejectedHash
}

// ReloadError is a rejected reload: the new file's problems. The previous
// configuration keeps serving.
type ReloadError struct{ Problems []string }

func (e *ReloadError) Error() string {
	return fmt.Sprintf("configuration reload rejected (the previous configuration keeps serving): %v", e.Problems)
}

// Reload rebuilds everything from the configuration file and swaps it in:
// requests that already started finish on the configuration they started
// with, new ones get the new configuration, sessions (in the shared store)
// survive. A file that fails to load or build is rejected whole, logged and
// audited with its problems, and the running configuration stays. The
// listeners, the session store, the audit log and telemetry are kept: a
// change of listen, admin_listen, server, session.store/bolt/redis, audit
// or telemetry is rejected as needing a restart (docs/frontends.md).
// SIGHUP calls it (cmd/gatehouse); so does a change of the file while Run
// runs.
func (g *Gateway) Reload(ctx context.Context) error {
	g.reload.mu.Lock()
	defer g.reload.mu.Unlock()
	if g.reload.stopped || g.reload.bg == nil {
		return errors.New("reload: the gateway is not running")
	}
	now := g.opts.Now()
	data, err := os.ReadFile(g.cfg.File)
	if err != nil {
		return g.rejectReload(ctx, "", []string{fmt.Sprintf("read %s: %v", g.cfg.File, err)})
	}
	hash := hashBytes(data)
	abs, err := filepath.Abs(g.cfg.File)
	if err != nil {
		return g.rejectReload(ctx, hash, []string{err.Error()})
	}
	cfg, err := config.Parse(data, g.cfg.File, filepath.Dir(abs))
	if err != nil {
		return g.rejectReload(ctx, hash, problemLines(err))
	}
	if ps := restartRequired(g.cfg, cfg); len(ps) > 0 {
		return g.rejectReload(ctx, hash, ps)
	}
	gen, err := g.build(ctx, cfg)
	if err != nil {
		return g.rejectReload(ctx, hash, problemLines(err))
	}
	gen.hash = hash
	for _, w := range cfg.Warnings() {
		g.log.Warn("configuration warning", "problem", w.String())
	}
	// Discover the IdPs before the swap, so that /bff/* does not answer 503
	// while the new generation finds them; one that cannot be reached now
	// is retried in the background as at start.
	for _, fe := range gen.fronts {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := fe.idp.connect(cctx); err != nil {
			g.log.Warn("identity provider not reachable during reload; retrying in the background", "client", fe.cfg.Client, "err", err)
		}
		cancel()
	}
	gen.start(g.reload.bg)
	old := g.gen.Swap(gen)
	g.reload.retiring.Go(func() { old.retire(drainTimeout) })
	g.reload.loaded(hash, now)
	g.reload.result("success", now, nil, "")
	g.log.Info("configuration reloaded", "file", g.cfg.File, "hash", hash, "frontends", len(gen.fronts))
	for _, fc := range cfg.Frontends() {
		g.metrics.Event(string(audit.EventConfigLoaded), string(audit.OutcomeSuccess))
		if err := g.audit.Log(ctx, audit.Record{Event: audit.EventConfigLoaded, Outcome: audit.OutcomeSuccess,
			Client: fc.Client, Reason: "reload", Path: g.cfg.File}); err != nil {
			g.log.Error("audit record not written", "event", "config_loaded", "err", err)
		}
	}
	return nil
}

// rejectReload logs, audits and records a rejected reload.
func (g *Gateway) rejectReload(ctx context.Context, hash string, problems []string) error {
	if len(problems) > maxReportedProblems {
		problems = append(problems[:maxReportedProblems:maxReportedProblems], fmt.Sprintf("… and %d more", len(problems)-maxReportedProblems))
	}
	g.reload.result("rejected", g.opts.Now(), problems, hash)
	g.log.Error("configuration reload rejected; the previous configuration keeps serving", "file", g.cfg.File, "problems", problems)
	g.metrics.Event(string(audit.EventConfigLoaded), string(audit.OutcomeFailure))
	reason := "reload_rejected"
	for i, p := range problems {
		if i == 3 {
			reason += "; …"
			break
		}
		reason += "; " + p
	}
	if err := g.audit.Log(ctx, audit.Record{Event: audit.EventConfigLoaded, Outcome: audit.OutcomeFailure,
		Reason: reason, Path: g.cfg.File}); err != nil {
		g.log.Error("audit record not written", "event", "config_loaded", "err", err)
	}
	return &ReloadError{Problems: problems}
}

// problemLines turns a load or build error into one line per problem
// (file:line: key: message; config keeps secrets out of them).
func problemLines(err error) []string {
	var ce *config.Errors
	if errors.As(err, &ce) {
		out := make([]string, 0, len(ce.Problems))
		for _, p := range ce.Problems {
			out = append(out, p.String())
		}
		return out
	}
	return []string{err.Error()}
}

// restartRequired lists the process-wide settings a reload cannot change:
// the listeners, the session store, the audit log and telemetry are opened
// once per process (a second audit writer would fork the hash chain; a
// second bolt handle would wait on the file lock).
func restartRequired(old, cfg *config.Config) []string {
	var out []string
	add := func(key string) {
		out = append(out, fmt.Sprintf("%s: %s changed; restart Gatehouse to apply it (a reload keeps the listeners, the session store, the audit log and telemetry)", cfg.File, key))
	}
	if old.Listen != cfg.Listen {
		add("listen")
	}
	if old.AdminListen != cfg.AdminListen {
		add("admin_listen")
	}
	was, is := old.Session, cfg.Session
	if was.Store != is.Store || was.Bolt != is.Bolt || !sameRedis(was.Redis, is.Redis) {
		add("session.store")
	}
	if !reflect.DeepEqual(old.Audit, cfg.Audit) {
		add("audit")
	}
	if urlString(old.Telemetry.OTLPEndpoint) != urlString(cfg.Telemetry.OTLPEndpoint) || old.Telemetry.LogLevel != cfg.Telemetry.LogLevel {
		add("telemetry")
	}
	if !reflect.DeepEqual(old.Server, cfg.Server) {
		add("server")
	}
	if !reflect.DeepEqual(old.TLS, cfg.TLS) {
		add("tls")
	}
	return out
}

func sameRedis(a, b config.RedisStore) bool {
	pw := func(r config.RedisStore) string {
		if r.Password == nil {
			return ""
		}
		return r.Password.Get().Reveal()
	}
	return a.Mode == b.Mode && a.URL == b.URL && reflect.DeepEqual(a.Addrs, b.Addrs) && a.MasterName == b.MasterName &&
		a.DB == b.DB && a.KeyPrefix == b.KeyPrefix && pw(a) == pw(b)
}

func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// hashFile is the hash of the file at path, or "" when it cannot be read
// (a configuration given to New from memory).
func hashFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return hashBytes(b)
}

// watchConfig reloads when the configuration file changes: written in
// place, or replaced by a rename (editors, Kubernetes ConfigMap volumes swap
// a symlink). It polls: a stat per interval, and a read only when the stat
// changed; a file whose content is the one in force, or the one last
// rejected, is not reloaded again.
func (g *Gateway) watchConfig(ctx context.Context) {
	if g.opts.ConfigPollInterval < 0 {
		return
	}
	t := time.NewTicker(g.opts.ConfigPollInterval)
	defer t.Stop()
	prev, _ := os.Stat(g.cfg.File)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := os.Stat(g.cfg.File)
		if err != nil {
			continue // being replaced, or gone: keep serving and look again
		}
		if prev != nil && os.SameFile(prev, st) && st.ModTime().Equal(prev.ModTime()) && st.Size() == prev.Size() {
			continue
		}
		prev = st
		cur, rejected := g.reload.current()
		if h := hashFile(g.cfg.File); h == "" || h == cur || h == rejected {
			continue
		}
		if err := g.Reload(ctx); err != nil && ctx.Err() == nil {
			var re *ReloadError
			if !errors.As(err, &re) {
				g.log.Warn("configuration reload", "err", err)
			}
		}
	}
}
