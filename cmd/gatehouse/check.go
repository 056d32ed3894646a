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
		printProblems(stderr, err)
		return errReported
	}
	// The build stage's own checks (policies, OIDC options, routes) run
	// too, with serve's constructors, so check and serve never disagree.
	if err := gateway.Check(cfg); err != nil {
		printProblems(stderr, err)
		return errReported
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stderr, "warning:", w.String())
	}
	if *online {
		var problems []string
		for _, fc := range cfg.Frontends() {
			if err := checkDiscovery(ctx, fc.Identity.Issuer); err != nil {
				key := "identity.issuer"
				if fc.Key != "" {
					key = fc.Key + "." + key
				}
				problems = append(problems, key+": "+err.Error())
			}
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
	if cfg.MultiFrontend() {
		fmt.Fprintf(stdout, "%s: configuration is valid (%d frontends)\n", cfg.File, len(cfg.Frontends()))
		for _, fc := range cfg.Frontends() {
			fmt.Fprintf(stdout, "  frontend %s (%s): %s, %d routes\n", fc.Client, fc.Key, fc.Origin()+fc.PathPrefix(), len(fc.Routes))
		}
		return nil
	}
	fmt.Fprintf(stdout, "%s: configuration is valid (%d routes)\n", cfg.File, len(cfg.Routes))
	return nil
}

// printProblems prints a load or build error, one "file:line: key: message"
// per line. In the frontends: form the problems of each entry come under a
// "frontend <client>:" heading, so that a file of several frontends reads
// per frontend (problem lines stay unindented, for editors and CI to link).
func printProblems(w io.Writer, err error) {
	var ce *config.Errors
	if !errors.As(err, &ce) {
		fmt.Fprintln(w, err)
		return
	}
	cur := ""
	for _, p := range ce.Problems {
		if p.Frontend != cur {
			cur = p.Frontend
			if cur != "" {
				fmt.Fprintf(w, "frontend %s:\n", cur)
			}
		}
		fmt.Fprintln(w, p.String())
	}
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
