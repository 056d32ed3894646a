package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// idpError is an error answer from the IdP. It keeps only the RFC 6749 error
// code (filtered to its allowed characters) and the status: descriptions and
// bodies may echo request values and are never kept.
type idpError struct {
	Endpoint string
	Status   int
	Code     string
}

func (e *idpError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("IdP %s endpoint answered %d %s", e.Endpoint, e.Status, e.Code)
	}
	return fmt.Sprintf("IdP %s endpoint answered %d", e.Endpoint, e.Status)
}

// safeErrorCode keeps an IdP error code only if it looks like one
// (RFC 6749 allows %x20-21 / %x23-5B / %x5D-7E; we keep the usual subset).
func safeErrorCode(s string) string {
	if len(s) > 64 {
		return "invalid_error_code"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':') {
			return "invalid_error_code"
		}
	}
	return s
}

// postForm POSTs form to an IdP endpoint with client authentication and
// decodes a JSON answer into out (when out is non-nil and the status is 2xx).
func (h *Handler) postForm(ctx context.Context, name, endpoint string, form url.Values, out any) error {
	form = cloneValues(form)
	sec := h.clientSecret()
	switch h.opts.ClientAuth {
	case AuthClientSecretPost:
		form.Set("client_id", h.opts.ClientID)
		form.Set("client_secret", sec)
	case AuthPrivateKeyJWT:
		ap, err := h.assertionParams()
		if err != nil {
			return fmt.Errorf("IdP %s request: %w", name, err)
		}
		form.Set("client_id", h.opts.ClientID)
		for k, v := range ap {
			form[k] = v
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("build IdP %s request: %w", name, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if h.opts.ClientAuth == AuthClientSecretBasic {
		// RFC 6749 2.3.1: form-encode both parts before Basic encoding.
		req.SetBasicAuth(url.QueryEscape(h.opts.ClientID), url.QueryEscape(sec))
	}
	resp, err := h.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("IdP %s request: %w", name, redactURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read IdP %s answer: %w", name, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		return &idpError{Endpoint: name, Status: resp.StatusCode, Code: safeErrorCode(e.Error)}
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("IdP %s answer is not the expected JSON", name)
		}
	}
	return nil
}

// redactURLError keeps the operation and cause of a transport error; the URL
// is an IdP endpoint (no secrets) but may carry a query, which we drop.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery = ""
			return &url.Error{Op: ue.Op, URL: u.Redacted(), Err: ue.Err}
		}
	}
	return err
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v)+2)
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// pushAuthorizationRequest sends the authorization parameters to the PAR
// endpoint (RFC 9126) and returns the URL the browser is sent to.
func (h *Handler) pushAuthorizationRequest(ctx context.Context, authURL string) (string, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return "", fmt.Errorf("parse authorization URL: %w", err)
	}
	var out struct {
		RequestURI string `json:"request_uri"`
		ExpiresIn  int    `json:"expires_in"`
	}
	if err := h.postForm(ctx, "pushed authorization request", h.meta.PAREndpoint, u.Query(), &out); err != nil {
		return "", err
	}
	if out.RequestURI == "" {
		return "", errors.New("IdP pushed authorization request answer has no request_uri")
	}
	q := url.Values{"client_id": {h.opts.ClientID}, "request_uri": {out.RequestURI}}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// revoke revokes a token at the IdP (RFC 7009). It is a no-op when the IdP
// has no revocation endpoint.
func (h *Handler) revoke(ctx context.Context, token, hint string) error {
	if h.meta.RevocationEndpoint == "" || token == "" {
		return nil
	}
	return h.postForm(ctx, "revocation", h.meta.RevocationEndpoint,
		url.Values{"token": {token}, "token_type_hint": {hint}}, nil)
}
