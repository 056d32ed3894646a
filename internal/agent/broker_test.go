package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/policy"
	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/session/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/syncbuf"
)

// env is one broker over real components: a session manager on a memory
// store, a grant store of the kind under test, a real audit log.
type env struct {
	clock    *storetest.Clock
	sessions *session.Manager
	grants   session.Store
	broker   *Broker
	auditLog *audit.Logger
	auditOut *syncbuf.Buffer
}

type storeKind struct {
	name string
	open func(t *testing.T, now func() time.Time) session.Store
}

func storeKinds(t *testing.T) []storeKind {
	return []storeKind{
		{"memory", func(t *testing.T, now func() time.Time) session.Store { return session.NewMemoryStore(now) }},
		{"bolt", func(t *testing.T, now func() time.Time) session.Store {
			s, err := session.OpenBoltStore(filepath.Join(t.TempDir(), "sessions-agents.db"), session.BoltOptions{Now: now, SweepInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"redis", func(t *testing.T, now func() time.Time) session.Store {
			srv := redisserver.Start(t)
			s, err := session.NewRedisStore(session.RedisOptions{URL: srv.URL(), KeyPrefix: "gatehouse:agents:", Now: now})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
}

func newEnv(t *testing.T, k storeKind, mod func(*Options)) *env {
	t.Helper()
	e := &env{clock: storetest.NewClock(), auditOut: &syncbuf.Buffer{}}
	e.sessions = session.NewManager(session.NewMemoryStore(e.clock.Now), session.Options{
		IdleTimeout: 30 * time.Minute, AbsoluteTimeout: time.Hour, Now: e.clock.Now, HealthInterval: -1, CacheTTL: -1})
	t.Cleanup(func() { _ = e.sessions.Close() })
	e.grants = k.open(t, e.clock.Now)
	t.Cleanup(func() { _ = e.grants.Close() })
	var err error
	e.auditLog, err = audit.Open(context.Background(), audit.Options{Sink: "stdout", Stdout: e.auditOut, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.auditLog.Close() })
	o := Options{Store: e.grants, Sessions: e.sessions, Delegable: testDelegable,
		MaxTTL: 15 * time.Minute, DefaultTTL: 5 * time.Minute, MaxPerSession: 3,
		Audit: e.auditLog, Client: "web", Now: e.clock.Now}
	if mod != nil {
		mod(&o)
	}
	e.broker, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.broker.Close)
	return e
}

// login creates a real session for sub and returns its handle.
func (e *env) login(t *testing.T, sub string) (session.Handle, *session.Session) {
	t.Helper()
	s := &session.Session{Subject: sub, Claims: map[string]any{"email_verified": true}}
	h, err := e.sessions.Create(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := e.sessions.Load(context.Background(), h, false)
	if err != nil {
		t.Fatal(err)
	}
	return h, loaded
}

func allowAll(context.Context, *session.Session, string, string, *policy.AgentInfo) (bool, error) {
	return true, nil
}

func (e *env) issue(t *testing.T, h session.Handle, s *session.Session, req Request) Issued {
	t.Helper()
	iss, err := e.broker.Issue(context.Background(), h, s, req, allowAll)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// records closes the audit log and returns its records.
func (e *env) records(t *testing.T) []audit.Record {
	t.Helper()
	if err := e.auditLog.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(strings.NewReader(e.auditOut.String()), "audit"); err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, line := range strings.Split(strings.TrimSpace(e.auditOut.String()), "\n") {
		if line == "" {
			continue
		}
		var j struct {
			Event, Outcome, Reason, Sub, Session, Route, Method string
			Actor                                               []string
		}
		if err := json.Unmarshal([]byte(line), &j); err != nil {
			t.Fatal(err)
		}
		out = append(out, audit.Record{Event: audit.Event(j.Event), Outcome: audit.Outcome(j.Outcome), Reason: j.Reason,
			Sub: j.Sub, Session: j.Session, Route: j.Route, Method: j.Method, Actor: j.Actor})
	}
	return out
}

func authReason(err error) string {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return ""
}

func TestBrokerOnEveryStore(t *testing.T) {
	for _, k := range storeKinds(t) {
		t.Run(k.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, k, nil)
			h, s := e.login(t, "alice")
			iss := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile", "billing"}, Methods: []string{"GET"}, TTL: 2 * time.Minute})
			if got := scopeString(iss.Grant.Scope); got != "billing:GET;profile:GET" {
				t.Errorf("scope %s", got)
			}

			d, err := e.broker.Authenticate(ctx, iss.Token.Value().Reveal())
			if err != nil {
				t.Fatal(err)
			}
			if d.Session.ID != s.ID || d.Handle.ID() != h.ID() || d.Grant.Subject != "alice" || d.Grant.Name != "bot" {
				t.Errorf("delegation = %+v", d.Grant)
			}
			if !d.Grant.Allows("profile", "GET") || d.Grant.Allows("profile", "POST") || d.Grant.Allows("catalog", "GET") {
				t.Error("Allows disagrees with the scope")
			}

			// Listing: this session sees it, another session of the same user does not.
			gs, err := e.broker.List(ctx, s.ID)
			if err != nil || len(gs) != 1 || gs[0].ID != iss.Grant.ID {
				t.Fatalf("list = %+v, %v", gs, err)
			}
			h2, s2 := e.login(t, "alice")
			if gs, _ := e.broker.List(ctx, s2.ID); len(gs) != 0 {
				t.Errorf("another session lists %d grants", len(gs))
			}
			if err := e.broker.Revoke(ctx, s2.ID, iss.Grant.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("revoke from another session: %v, want ErrNotFound", err)
			}
			if _, err := e.broker.Authenticate(ctx, iss.Token.Value().Reveal()); err != nil {
				t.Fatalf("a refused cross-session revoke must leave the grant: %v", err)
			}
			_ = h2

			// The admin sees every grant of the user.
			e.issue(t, h2, s2, Request{Name: "other", Routes: []string{"profile"}})
			all, err := e.broker.ListBySubject(ctx, "alice")
			if err != nil || len(all) != 2 {
				t.Fatalf("by subject = %d, %v", len(all), err)
			}

			// The owner revokes it: 401 from then on.
			if err := e.broker.Revoke(ctx, s.ID, iss.Grant.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := e.broker.Authenticate(ctx, iss.Token.Value().Reveal()); authReason(err) != "token_unknown" {
				t.Errorf("after revoke: %v", err)
			}
			if err := e.broker.Revoke(ctx, s.ID, iss.Grant.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("second revoke: %v", err)
			}
		})
	}
}

func TestAgentTokenExpires(t *testing.T) {
	for _, k := range storeKinds(t) {
		t.Run(k.name, func(t *testing.T) {
			e := newEnv(t, k, nil)
			h, s := e.login(t, "alice")
			iss := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}, TTL: time.Minute})
			e.clock.Advance(time.Minute - time.Millisecond)
			if _, err := e.broker.Authenticate(context.Background(), iss.Token.Value().Reveal()); err != nil {
				t.Fatalf("before expiry: %v", err)
			}
			e.clock.Advance(time.Millisecond)
			_, err := e.broker.Authenticate(context.Background(), iss.Token.Value().Reveal())
			if r := authReason(err); r != "token_unknown" && r != "token_expired" {
				t.Errorf("at expiry: %v", err)
			}
		})
	}
}

// Whatever ends the session — logout, revocation, back-channel logout,
// idle or absolute expiry — the agent token is refused, because every use
// loads the delegating session.
func TestAgentTokenDiesWithItsSession(t *testing.T) {
	ends := []struct {
		name string
		end  func(e *env, h session.Handle, s *session.Session)
	}{
		{"logout or revoke", func(e *env, h session.Handle, s *session.Session) { _ = e.sessions.Delete(context.Background(), s.ID) }},
		{"all sessions of the user", func(e *env, h session.Handle, s *session.Session) {
			_, _ = e.sessions.DeleteBySubject(context.Background(), s.Subject)
		}},
		{"idle expiry", func(e *env, h session.Handle, s *session.Session) { e.clock.Advance(30 * time.Minute) }},
	}
	for _, k := range storeKinds(t)[:2] {
		for _, end := range ends {
			t.Run(k.name+"/"+end.name, func(t *testing.T) {
				// A grant longer than the idle timeout, so that the session's
				// end, not the grant's, is what refuses it.
				e := newEnv(t, k, func(o *Options) { o.MaxTTL, o.DefaultTTL = 45*time.Minute, 45*time.Minute })
				h, s := e.login(t, "alice")
				iss := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}})
				end.end(e, h, s)
				_, err := e.broker.Authenticate(context.Background(), iss.Token.Value().Reveal())
				if authReason(err) != "session_ended" {
					t.Errorf("after the session ended: %v, want session_ended", err)
				}
			})
		}
	}
}

// An agent's calls do not keep the user's session alive.
func TestAgentUseDoesNotSlideTheSession(t *testing.T) {
	e := newEnv(t, storeKinds(t)[0], func(o *Options) { o.MaxTTL, o.DefaultTTL = 15*time.Minute, 15*time.Minute })
	h, s := e.login(t, "alice")
	iss := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}})
	for range 3 {
		e.clock.Advance(10 * time.Minute) // 30 minutes in all: the idle timeout
		_, _ = e.broker.Authenticate(context.Background(), iss.Token.Value().Reveal())
	}
	if _, err := e.sessions.Load(context.Background(), h, false); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("session after 30 idle minutes of agent use: %v, want ended", err)
	}
}

func TestGrantTTLIsCappedAtTheSessionsRemainingLife(t *testing.T) {
	e := newEnv(t, storeKinds(t)[0], nil)
	h, s := e.login(t, "alice")
	// Keep the session from idling out until it has 2 minutes left.
	e.clock.Advance(29 * time.Minute)
	if _, err := e.sessions.Load(context.Background(), h, true); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(29 * time.Minute)
	s, err := e.sessions.Load(context.Background(), h, true)
	if err != nil {
		t.Fatal(err)
	}
	iss := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}, TTL: 10 * time.Minute})
	if got := iss.Grant.Expires.Sub(e.clock.Now()); got != 2*time.Minute {
		t.Errorf("grant lives %s, want the session's remaining 2m", got)
	}
}

func TestMaxTokensPerSession(t *testing.T) {
	e := newEnv(t, storeKinds(t)[0], nil) // MaxPerSession 3
	h, s := e.login(t, "alice")
	var last Issued
	for range 3 {
		last = e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}})
	}
	if _, err := e.broker.Issue(context.Background(), h, s, Request{Name: "bot", Routes: []string{"profile"}}, allowAll); !errors.Is(err, ErrTooMany) {
		t.Fatalf("4th token: %v, want ErrTooMany", err)
	}
	if gs, _ := e.broker.List(context.Background(), s.ID); len(gs) != 3 {
		t.Errorf("%d grants stored after a refused 4th, want 3", len(gs))
	}
	// Another session has its own budget; revoking one frees a slot.
	h2, s2 := e.login(t, "alice")
	e.issue(t, h2, s2, Request{Name: "bot", Routes: []string{"profile"}})
	if err := e.broker.Revoke(context.Background(), s.ID, last.Grant.ID); err != nil {
		t.Fatal(err)
	}
	e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}})
}

func TestIssueNarrowsByTheUsersPolicyWithAgentSet(t *testing.T) {
	e := newEnv(t, storeKinds(t)[0], nil)
	h, s := e.login(t, "alice")
	var seen *policy.AgentInfo
	usersOnlyBilling := func(_ context.Context, _ *session.Session, route, method string, a *policy.AgentInfo) (bool, error) {
		seen = a
		return route != "billing", nil // billing: allow 'agent == null'
	}
	iss, err := e.broker.Issue(context.Background(), h, s, Request{Name: "bot", Routes: []string{"profile", "billing"}}, usersOnlyBilling)
	if err != nil {
		t.Fatal(err)
	}
	if got := scopeString(iss.Grant.Scope); got != "profile:GET" {
		t.Errorf("scope %s, want profile:GET", got)
	}
	if seen == nil || seen.Name != "bot" || seen.ID != iss.Grant.ID {
		t.Errorf("policy saw agent %+v", seen)
	}
	_, err = e.broker.Issue(context.Background(), h, s, Request{Name: "bot", Routes: []string{"billing"}}, usersOnlyBilling)
	if !errors.Is(err, ErrNothingDelegable) {
		t.Errorf("only refused routes: %v", err)
	}
}

// A dump of the grant store alone yields no token and no session: the store
// holds a hash of the token's id, never the id, the key or the token, and
// the session handle only sealed under the key. Guessing fails too.
func TestStoreDumpYieldsNoTokenAndNoSession(t *testing.T) {
	e := newEnv(t, storeKinds(t)[0], nil)
	h, s := e.login(t, "alice")
	iss := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}})
	tok := iss.Token

	rec, err := e.grants.Get(context.Background(), tok.ID())
	if err != nil {
		t.Fatalf("the grant is not stored under the hashed id: %v", err)
	}
	if rec.ID != publicID(tok.raw[:rawIDLen]) {
		t.Fatal("store key is not the hash of the token id")
	}
	dump := []byte(rec.ID + rec.Subject + rec.IdPSessionID)
	dump = append(dump, rec.Sealed...)
	cookie := h.Cookie().Reveal()
	rawCookie, _ := base64.RawURLEncoding.DecodeString(cookie)
	for what, secret := range map[string][]byte{
		"token":               []byte(tok.Value().Reveal()),
		"token body":          []byte(tok.Value().Reveal()[4:]),
		"token id bytes":      tok.raw[:rawIDLen],
		"token key bytes":     tok.key(),
		"session cookie":      []byte(cookie),
		"session handle id":   rawCookie[:16],
		"session handle key":  rawCookie[16:],
		"session cookie tail": []byte(cookie[len(cookie)-20:]),
	} {
		if bytes.Contains(dump, secret) {
			t.Errorf("the store holds the %s", what)
		}
	}
	// The dump's id used as a token, or a token rebuilt around it, is refused.
	for _, guess := range []string{rec.ID, TokenPrefix + rec.ID, TokenPrefix + base64.RawURLEncoding.EncodeToString(append([]byte(rec.ID), make([]byte, 21)...))[:64]} {
		if _, err := e.broker.Authenticate(context.Background(), guess); err == nil {
			t.Errorf("%q from the dump authenticates", guess)
		}
	}
	// The same id with another key does not open the grant.
	forged := tok
	forged.raw[rawLen-1] ^= 1
	if _, err := e.broker.Authenticate(context.Background(), forged.Value().Reveal()); authReason(err) != "token_unknown" {
		t.Errorf("a token with the right id and a wrong key: %v", err)
	}
}

// Rewriting the readable description in the store (widening the scope,
// pushing the expiry) makes the grant unusable rather than wider.
func TestTamperedGrantDoesNotOpen(t *testing.T) {
	e := newEnv(t, storeKinds(t)[0], nil)
	h, s := e.login(t, "alice")
	iss := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}})
	rec, _ := e.grants.Get(context.Background(), iss.Grant.ID)
	rec.Sealed = bytes.Replace(rec.Sealed, []byte(`"route":"profile"`), []byte(`"route":"billing"`), 1)
	if err := e.grants.Replace(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	if _, err := e.broker.Authenticate(context.Background(), iss.Token.Value().Reveal()); authReason(err) != "token_unknown" {
		t.Errorf("tampered grant: %v", err)
	}
}

func TestSessionEndDeletesGrantsAndAudits(t *testing.T) {
	for _, k := range storeKinds(t) {
		t.Run(k.name, func(t *testing.T) {
			e := newEnv(t, k, nil)
			h, s := e.login(t, "alice")
			a := e.issue(t, h, s, Request{Name: "bot-a", Routes: []string{"profile"}})
			e.issue(t, h, s, Request{Name: "bot-b", Routes: []string{"billing"}})
			h2, s2 := e.login(t, "alice")
			keep := e.issue(t, h2, s2, Request{Name: "bot-c", Routes: []string{"profile"}})

			e.broker.SessionEnded(s.ID, "logout", true) // another instance ended it: nothing to do here
			e.broker.SessionEnded(s.ID, "logout", false)
			e.broker.Close()
			if recs, _ := e.grants.ListBySubject(context.Background(), s.ID); len(recs) != 0 {
				t.Errorf("%d grants of the ended session remain", len(recs))
			}
			if _, err := e.broker.Authenticate(context.Background(), keep.Token.Value().Reveal()); err != nil {
				t.Errorf("another session's grant was hit: %v", err)
			}
			var revoked []audit.Record
			for _, r := range e.records(t) {
				if r.Event == audit.EventAgentTokenRevoked {
					revoked = append(revoked, r)
				}
			}
			if len(revoked) != 2 || revoked[0].Reason != "session_logout" || revoked[0].Sub != "alice" || revoked[0].Session != s.ID {
				t.Fatalf("revocation records = %+v", revoked)
			}
			found := false
			for _, r := range revoked {
				if len(r.Actor) == 1 && r.Actor[0] == "agent:"+a.Grant.ID+":bot-a" {
					found = true
				}
			}
			if !found {
				t.Errorf("no record names agent %s (bot-a): %+v", a.Grant.ID, revoked)
			}
		})
	}
}

func TestIssueAndRevokeAreAuditedWithTheActorChainAndNoToken(t *testing.T) {
	e := newEnv(t, storeKinds(t)[0], nil)
	h, s := e.login(t, "alice")
	iss := e.issue(t, h, s, Request{Name: "travel bot", Routes: []string{"profile"}})
	if _, err := e.broker.Issue(context.Background(), h, s, Request{Name: "x", Routes: []string{"nope"}}, allowAll); !errors.Is(err, ErrNothingDelegable) {
		t.Fatal(err)
	}
	if _, err := e.broker.RevokeByID(context.Background(), iss.Grant.ID); err != nil {
		t.Fatal(err)
	}
	recs := e.records(t)
	if strings.Contains(e.auditOut.String(), iss.Token.Value().Reveal()[4:]) {
		t.Fatal("the audit log holds the token")
	}
	want := []struct {
		ev      audit.Event
		outcome audit.Outcome
		reason  string
		actor   string
	}{
		{audit.EventAgentTokenIssued, audit.OutcomeSuccess, "", "agent:" + iss.Grant.ID + ":travel bot"},
		{audit.EventAgentTokenIssued, audit.OutcomeFailure, "nothing_delegable", ""},
		{audit.EventAgentTokenRevoked, audit.OutcomeSuccess, "admin_revoke", "admin"},
	}
	if len(recs) != len(want) {
		t.Fatalf("records = %+v", recs)
	}
	for i, w := range want {
		r := recs[i]
		if r.Event != w.ev || r.Outcome != w.outcome || r.Reason != w.reason || r.Sub != "alice" || r.Session != s.ID {
			t.Errorf("record %d = %+v", i, r)
		}
		if w.actor != "" && (len(r.Actor) == 0 || r.Actor[0] != w.actor) {
			t.Errorf("record %d actor = %v, want %s first", i, r.Actor, w.actor)
		}
	}
	if r := recs[2]; len(r.Actor) != 2 || r.Actor[1] != "agent:"+iss.Grant.ID+":travel bot" {
		t.Errorf("admin revocation actor chain = %v", r.Actor)
	}
	if recs[0].Route != "profile" || recs[0].Method != "GET" {
		t.Errorf("issued record scope = %s %s", recs[0].Route, recs[0].Method)
	}
}

// When the audit log cannot take the issue record, no token is handed out
// and the grant is withdrawn.
func TestIssueFailsClosedWhenTheAuditLogIsDown(t *testing.T) {
	e := newEnv(t, storeKinds(t)[0], nil)
	h, s := e.login(t, "alice")
	_ = e.auditLog.Close()
	_, err := e.broker.Issue(context.Background(), h, s, Request{Name: "bot", Routes: []string{"profile"}}, allowAll)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if recs, _ := e.grants.ListBySubject(context.Background(), s.ID); len(recs) != 0 {
		t.Errorf("%d grants left behind", len(recs))
	}
}
