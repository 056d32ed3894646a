package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
)

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	path := fs.String("c", "gatehouse.yaml", "configuration file")
	online := fs.Bool("online", false, "also fetch the IdP's discovery document and ping the session store")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return errReported
	}
	// The build stage's own checks (policies, OIDC options, routes) run
	// too, with serve's constructors, so check and serve never disagree.
	if err := gateway.Check(cfg); err != nil {
		fmt.Fprintln(stderr, err)
		return errReported
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stderr, "warning:", w.String())
	}
	if *online {
		var problems []string
		if err := checkDiscovery(ctx, cfg.Identity.Issuer); err != nil {
			problems = append(problems, "identity.issuer: "+err.Error())
		}
		if err := gateway.PingStore(ctx, cfg); err != nil {
			problems = append(problems, "session.store: "+err.Error())
		}
		if len(problems) > 0 {
			for _, p := range problems {
				fmt.Fprintf(stderr, "%s: %s\n", cfg.File, p)
			}
			return errReported
		}
	}
	fmt.Fprintf(stdout, "%s: configuration is valid (%d routes)\n", cfg.File, len(cfg.Routes))
	return nil
}

// checkDiscovery fetches the IdP's discovery document and checks that it
// names the configured issuer exactly (OIDC Discovery §4.3).
func checkDiscovery(ctx context.Context, issuer string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch discovery document: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("discovery document %s answered %s", u, resp.Status)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return fmt.Errorf("discovery document %s is not JSON: %w", u, err)
	}
	if doc.Issuer != issuer {
		return errors.New("discovery document names issuer " + doc.Issuer + ", not " + issuer + ": use exactly the IdP's issuer")
	}
	return nil
}
