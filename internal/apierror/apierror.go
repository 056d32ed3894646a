// Package apierror writes Gatehouse's JSON error responses, the one shape every
// stage uses: {"error": "<code>", "message": "<what went wrong and how to fix it>"}.
package apierror

import (
	"encoding/json"
	"net/http"
)

// Body is the JSON error body.
type Body struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// Write sends status with a JSON error body. code is a stable machine-readable
// identifier (e.g. "csrf_header_missing"); message is for humans and must never
// contain a secret, a token or a value copied from the request.
func Write(w http.ResponseWriter, status int, code, message string) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Body{Error: code, Message: message})
}
