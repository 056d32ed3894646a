package oauthserver

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/dpop"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// IdentifyError is why a native request was refused: Status (401, 403 or
// 503), a stable Code, a Message for humans (never a request value), the
// WWW-Authenticate value to answer with, and the operator-facing cause.
type IdentifyError struct {
	Status    int
	Code      string
	Message   string
	Challenge string
	Err       error
}

func (e *IdentifyError) Error() string { return e.Code + ": " + e.Message }

// RecognisesNative reports, without I/O, whether r carries a native
// credential: Authorization: DPoP …, or one of our handles as Bearer
// (refused by Identify, never passed to another identifier).
func RecognisesNative(r *http.Request) bool {
	for _, v := range r.Header["Authorization"] {
		scheme, tok, _ := strings.Cut(v, " ")
		if strings.EqualFold(scheme, "DPoP") || (strings.EqualFold(scheme, "Bearer") && strings.HasPrefix(strings.TrimSpace(tok), NativePrefix)) {
			return true
		}
	}
	return false
}

func invalidToken(msg string) *IdentifyError {
	return &IdentifyError{Status: http.StatusUnauthorized, Code: dpop.CodeInvalidToken, Message: msg,
		Challenge: dpop.Challenge(dpop.CodeInvalidToken, msg)}
}

// Identify checks a native API request (RFC 9449 §7): exactly one
// Authorization: DPoP <handle>, a DPoP proof for this method and URL (htu =
// public_url's origin + the path as received, never Host or X-Forwarded-*),
// ath of the handle, the handle's key, a jti not seen before; then the
// session, which must be a redeemed native session, and route among its
// scopes. The session's idle timeout slides only once all of that passed.
func (s *Server) Identify(ctx context.Context, r *http.Request, route string) (session.Handle, *session.Session, *IdentifyError) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return session.Handle{}, nil, invalidToken("send exactly one Authorization header")
	}
	scheme, tok, _ := strings.Cut(vals[0], " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "DPoP") {
		return session.Handle{}, nil, invalidToken("this handle is bound to a DPoP key: send it as Authorization: DPoP with a DPoP proof")
	}
	h, err := ParseNativeHandle(tok)
	if err != nil {
		return session.Handle{}, nil, invalidToken("the access token is not a Gatehouse native handle")
	}
	sess, err := s.o.Sessions.Load(ctx, h, false)
	switch {
	case errors.Is(err, session.ErrUnavailable):
		return session.Handle{}, nil, &IdentifyError{Status: http.StatusServiceUnavailable, Code: "session_unavailable", Message: "the session store is unavailable; try again shortly", Err: err}
	case err != nil:
		return session.Handle{}, nil, invalidToken("the access token is unknown, expired or revoked: authorize again")
	case sess.Native == nil || sess.Native.JKT == "":
		return session.Handle{}, nil, invalidToken("the access token is not a redeemed native handle")
	}
	// public_url's origin and the path exactly as received (its escaping
	// kept): never Host or X-Forwarded-*.
	u := url.URL{Scheme: s.pub.Scheme, Host: s.pub.Host, Path: r.URL.Path, RawPath: r.URL.RawPath}
	if _, err := s.o.DPoP.Verify(ctx, r.Header, dpop.Check{Method: r.Method, URL: &u, AccessToken: tok, JKT: sess.Native.JKT}); err != nil {
		var de *dpop.Error
		if errors.As(err, &de) {
			return session.Handle{}, nil, &IdentifyError{Status: http.StatusUnauthorized, Code: de.Code, Message: de.Description,
				Challenge: dpop.Challenge(de.Code, de.Description), Err: err}
		}
		return session.Handle{}, nil, &IdentifyError{Status: http.StatusServiceUnavailable, Code: "session_unavailable", Message: "the replay cache is unavailable; try again shortly", Err: err}
	}
	if route != "" && !slices.Contains(sess.Native.Scopes, route) {
		return session.Handle{}, nil, &IdentifyError{Status: http.StatusForbidden, Code: "insufficient_scope", Message: "the handle was not granted this route; authorize again with it in scope",
			Challenge: `DPoP error="insufficient_scope", scope="` + route + `"`}
	}
	if sess, err = s.o.Sessions.Load(ctx, h, true); err != nil { // counts as activity now
		if errors.Is(err, session.ErrUnavailable) {
			return session.Handle{}, nil, &IdentifyError{Status: http.StatusServiceUnavailable, Code: "session_unavailable", Message: "the session store is unavailable; try again shortly", Err: err}
		}
		return session.Handle{}, nil, invalidToken("the access token is unknown, expired or revoked: authorize again")
	}
	return h, sess, nil
}

// Challenges are the WWW-Authenticate values for a request without any
// credential (RFC 9728 §5.1): the Bearer challenge with resource_metadata
// first (strict clients read the first), then the DPoP one.
func (s *Server) Challenges(scope string) []string {
	return []string{BearerChallenge(s.prURL, scope), dpop.Challenge("", "")}
}
