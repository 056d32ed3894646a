package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// TokenRefresher is implemented by UserTokens that can replace an access
// token an upstream refused before it expired (oidc.Tokens.RefreshRejected):
// at most one refresh per rejected token and session, shared by every
// request that saw the same 401.
type TokenRefresher interface {
	RefreshRejected(ctx context.Context, id *Identity, rejected secret.Secret) (secret.Secret, error)
}

// maxReplayBody bounds the request body kept to retry a request after an
// upstream 401; a longer body is streamed and never retried.
const maxReplayBody = 64 << 10

// refreshable reports whether an upstream 401 on the route means the user's
// token (or the token exchanged from it) was refused: then Gatehouse
// refreshes once, retries once, and otherwise answers 401 so the SPA signs
// the user in again (issue 15 item 3).
func (rt *route) refreshable() bool { return userCredential(rt.cred.Kind) }

// retry401 wraps a refreshable route's transport: an upstream 401 makes it
// refresh the session's tokens once and send the request once more, when
// the request body can be replayed (none, or fully read and at most
// maxReplayBody bytes). Anything else returns the 401 unchanged, which
// becomes a 401 to the client.
type retry401 struct {
	next http.RoundTripper
	p    *Proxy
	rt   *route
}

func (t *retry401) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	st := forwardingOf(req.Context())
	if st == nil || st.id == nil || st.retried {
		return resp, nil
	}
	body, ok := replayable(req, st)
	if !ok {
		return resp, nil
	}
	st.retried = true
	cred, rerr := t.p.replaceCredential(req.Context(), t.rt, st.id, st.cred)
	if rerr != nil {
		t.p.log.WarnContext(req.Context(), "upstream refused the credential and it could not be replaced", "route", t.rt.name, "err", rerr)
		return resp, nil
	}
	// The first answer is dropped (a little of it read, so the connection
	// may be reused).
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	again := req.Clone(req.Context())
	again.Header = req.Header.Clone()
	again.Header["Authorization"] = []string{"Bearer " + cred.Reveal()}
	if body != nil {
		again.Body = io.NopCloser(bytes.NewReader(body))
		again.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	st.cred = cred
	return t.next.RoundTrip(again)
}

// replayable returns the body to send again (nil for none) and whether the
// request can be sent again at all.
func replayable(req *http.Request, st *forwarding) ([]byte, bool) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, true
	}
	if st.replay == nil || req.Body != io.ReadCloser(st.replay) {
		return nil, false
	}
	return st.replay.complete()
}

// replaceCredential obtains a new credential for the route after the
// upstream refused old: the user's token refreshed (user_token), or a
// fresh exchange of the refreshed token (token_exchange).
func (p *Proxy) replaceCredential(ctx context.Context, rt *route, id *Identity, old secret.Secret) (secret.Secret, error) {
	ref, ok := p.opts.UserTokens.(TokenRefresher)
	if !ok {
		return secret.Secret{}, errors.New("the user-token source cannot refresh on demand")
	}
	if rt.cred.Kind == CredentialUserToken {
		tok, err := ref.RefreshRejected(ctx, id, old)
		if err == nil && tok.Equal(old) {
			err = errors.New("the refresh returned the refused token")
		}
		return tok, err
	}
	// token_exchange: the exchanged token was refused; refresh the subject
	// it came from, then exchange the new one (used for this retry only:
	// the next request re-exchanges and caches against the stored session).
	subject, err := p.opts.UserTokens.AccessToken(ctx, id)
	if err != nil {
		return secret.Secret{}, err
	}
	fresh, err := ref.RefreshRejected(ctx, id, subject)
	if err != nil {
		return secret.Secret{}, err
	}
	p.exchanges.drop(id.SessionID, rt.name)
	var tok secret.Secret
	if id.Agent != nil {
		ax, ok := p.opts.Exchanger.(ActorExchanger)
		if !ok {
			return secret.Secret{}, errors.New("the Exchanger cannot name the agent as actor")
		}
		tok, _, err = ax.ExchangeAs(ctx, fresh, id.Agent, rt.cred.Audience, rt.cred.Scope, rt.cred.Resource)
	} else {
		tok, _, err = p.opts.Exchanger.Exchange(ctx, fresh, rt.cred.Audience, rt.cred.Scope, rt.cred.Resource)
	}
	if err == nil && tok.IsZero() {
		err = errors.New("the exchange returned no token")
	}
	return tok, err
}

// replayBody passes a request body to the transport and keeps a copy of it
// (up to maxReplayBody) so the request can be retried after a 401. The
// transport reads it on its own goroutine, hence the lock.
type replayBody struct {
	rc   io.ReadCloser
	mu   sync.Mutex
	buf  []byte
	eof  bool
	over bool
}

func (b *replayBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.mu.Lock()
	if !b.over {
		if len(b.buf)+n > maxReplayBody {
			b.over, b.buf = true, nil
		} else {
			b.buf = append(b.buf, p[:n]...)
		}
	}
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	b.mu.Unlock()
	return n, err
}

func (b *replayBody) Close() error { return b.rc.Close() }

// complete returns the whole body when it was read to its end and kept.
func (b *replayBody) complete() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.eof || b.over {
		return nil, false
	}
	return b.buf, true
}
