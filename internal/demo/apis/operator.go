package apis

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Operator stands in for an operator's console: POST /revoke?sid=<public id>
// revokes that session through Gatehouse's real admin API (DELETE
// /admin/sessions/{id} with the admin token read from tokenPath), so the
// demo SPA can show what the next call answers. Demo only.
func Operator(adminURL, tokenPath string) http.Handler {
	client := &http.Client{Timeout: 5 * time.Second}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/revoke") {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "not_found", "message": "POST /api/operator/revoke?sid=<session id>"})
			return
		}
		sid := r.URL.Query().Get("sid")
		if sid == "" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "sid_required", "message": "name the session: ?sid= (from bff:logout_url)"})
			return
		}
		tok, err := os.ReadFile(tokenPath)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]any{"error": "no_admin_token", "message": "the demo's admin token file is unreadable"})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		target := adminURL + "/admin/sessions/" + url.PathEscape(sid)
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, target, nil)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]any{"error": "bad_request", "message": err.Error()})
			return
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		res, err := client.Do(req)
		if err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]any{"error": "admin_unreachable", "message": "the admin API did not answer"})
			return
		}
		_ = res.Body.Close()
		writeJSON(w, http.StatusOK, map[string]any{
			"admin_request": "DELETE " + adminURL + "/admin/sessions/<sid>",
			"admin_status":  res.StatusCode,
		})
	})
}
