package server

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Check is one readiness dependency (session store, IdP discovery, audit sink).
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
	// Degrades marks a dependency whose failure degrades the instance but does not stop it
	// from serving (the IdP: logins and refreshes fail, existing sessions work): it is
	// reported as "degraded" and /readyz stays 200.
	Degrades bool
}

// HealthHandlers registers /healthz (the process is up) and /readyz (every
// dependency that is not merely degrading answers) on mux. /readyz names failing dependencies but never
// prints their error text, which could carry addresses or credentials.
// Each info function adds its keys to /readyz's answer (the loaded
// configuration's hash and the last reload's outcome).
func HealthHandlers(mux *http.ServeMux, checks []Check, info ...func() map[string]any) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		status := map[string]string{}
		ready := true
		for _, c := range checks {
			if err := c.Fn(ctx); err != nil && c.Degrades {
				status[c.Name] = "degraded"
			} else if err != nil {
				status[c.Name] = "unavailable"
				ready = false
			} else {
				status[c.Name] = "ok"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		out := map[string]any{"ready": ready, "checks": status}
		for _, f := range info {
			for k, v := range f() {
				if _, taken := out[k]; !taken {
					out[k] = v
				}
			}
		}
		_ = json.NewEncoder(w).Encode(out)
	})
}
