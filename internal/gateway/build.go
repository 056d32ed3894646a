package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/policy"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// BuildPolicies compiles every route's policy and builds the PDP client.
// Compile errors come back as config problems with file:line, all at once.
// `gatehouse check` calls it too, so check and serve agree. now and client
// (the PDP's clock and HTTP client) may be nil for the defaults.
func BuildPolicies(cfg *config.Config, now func() time.Time, client *http.Client) (map[string]*policy.Authorizer, error) {
	env, err := policy.NewEnv()
	if err != nil {
		return nil, fmt.Errorf("policy environment: %w", err)
	}
	var pdp *policy.PDP
	if p := cfg.Policy.PDP; p != nil {
		pdp, err = policy.NewPDP(policy.PDPConfig{URL: p.URL.String(), Token: p.Token, Timeout: p.Timeout, CacheTTL: p.CacheTTL,
			Now: now, HTTPClient: client})
		if err != nil {
			return nil, fmt.Errorf("policy.pdp: %w", err)
		}
	}
	var probs []config.Problem
	out := make(map[string]*policy.Authorizer, len(cfg.Routes))
	for _, r := range cfg.Routes {
		var prog *policy.Program
		if r.Allow.Source != "" {
			prog, err = env.Compile(r.Allow.Source)
			if err != nil {
				var ce *policy.CompileError
				if errors.As(err, &ce) {
					probs = append(probs, r.Allow.ProblemAt(ce.Line, ce.Column, ce.Message))
				} else {
					probs = append(probs, r.Allow.Problem(err.Error()))
				}
				continue
			}
		}
		out[r.Name] = policy.NewAuthorizer(prog, pdp)
	}
	if len(probs) > 0 {
		return nil, &config.Errors{Problems: probs}
	}
	return out, nil
}

func openAudit(ctx context.Context, cfg *config.Config, opts Options) (*audit.Logger, error) {
	onFailure := "deny"
	if cfg.Audit.OnFailure != "" {
		onFailure = string(cfg.Audit.OnFailure)
	}
	ao := audit.Options{
		Sink: string(cfg.Audit.Sink), Path: cfg.Audit.Path, Durability: cfg.Audit.Durability, FsyncInterval: cfg.Audit.FsyncInterval,
		MaxSize: cfg.Audit.MaxSize, Buffer: cfg.Audit.Buffer, OnFailure: onFailure, Now: opts.Now,
		Logger: opts.Logger.With("component", "audit"),
	}
	if opts.Stdout != nil {
		ao.Stdout = opts.Stdout
	}
	l, err := audit.Open(ctx, ao)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return l, nil
}

func openStore(cfg *config.Config, opts Options) (session.Store, error) {
	switch cfg.Session.Store {
	case config.StoreMemory:
		return session.NewMemoryStore(opts.Now), nil
	case config.StoreBolt:
		s, err := session.OpenBoltStore(cfg.Session.Bolt.Path, session.BoltOptions{Now: opts.Now, Logger: opts.Logger.With("component", "session")})
		if err != nil {
			return nil, err
		}
		return s, nil
	case config.StoreRedis:
		r := cfg.Session.Redis
		ro := session.RedisOptions{URL: r.URL, Addrs: r.Addrs, MasterName: r.MasterName, Cluster: r.Mode == config.RedisCluster,
			DB: r.DB, KeyPrefix: r.KeyPrefix, Now: opts.Now, Logger: opts.Logger.With("component", "session")}
		if r.Password != nil {
			ro.Password = r.Password.Get()
		}
		s, err := session.NewRedisStore(ro)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("session.store %q is not supported", cfg.Session.Store)
}

// PingStore checks that the configured session store can be reached, for
// `gatehouse check --online`. A bolt file is not opened (a running Gatehouse
// holds its lock); its directory must exist or be creatable.
func PingStore(ctx context.Context, cfg *config.Config) error {
	switch cfg.Session.Store {
	case config.StoreBolt:
		dir := filepath.Dir(cfg.Session.Bolt.Path)
		for d := dir; ; d = filepath.Dir(d) {
			if st, err := os.Stat(d); err == nil {
				if !st.IsDir() {
					return fmt.Errorf("%s is not a directory", d)
				}
				return nil
			}
			if filepath.Dir(d) == d {
				return fmt.Errorf("no existing parent directory for %s", dir)
			}
		}
	case config.StoreRedis:
		st, err := openStore(cfg, Options{Logger: slog.New(slog.DiscardHandler), Now: time.Now})
		if err != nil {
			return err
		}
		defer st.Close()
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := st.Ping(ctx); err != nil {
			return fmt.Errorf("ping redis: %w", err)
		}
	}
	return nil
}
