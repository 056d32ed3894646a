package session_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

// nopClose shares one store among several Managers (one per frontend), as
// the gateway does; the test closes the store itself.
type nopClose struct{ session.Store }

func (nopClose) Close() error { return nil }

// A session of one frontend is never accepted by another, even with a
// shared store (every kind) and the very same cookie: the second frontend
// does not open it, does not slide it and does not update it, and the
// first frontend still can.
func TestFrontendsNeverAcceptEachOthersSessions(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	stores := map[string]func(t *testing.T) session.Store{
		"memory": func(t *testing.T) session.Store { return session.NewMemoryStore(now) },
		"bolt": func(t *testing.T) session.Store {
			s, err := session.OpenBoltStore(filepath.Join(t.TempDir(), "s.db"), session.BoltOptions{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"redis": func(t *testing.T) session.Store {
			srv := redisserver.Start(t)
			s, err := session.NewRedisStore(session.RedisOptions{URL: srv.URL(), KeyPrefix: "gh:", Now: now})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := open(t)
			t.Cleanup(func() { st.Close() })
			mk := func(fe string) *session.Manager {
				m := session.NewManager(nopClose{st}, session.Options{Now: now, Frontend: fe, HealthInterval: -1, CacheTTL: -1})
				t.Cleanup(func() { m.Close() })
				return m
			}
			web, partners, legacy := mk("web"), mk("partners"), mk("")
			h, err := web.Create(ctx, &session.Session{Subject: "alice", IdPSessionID: "idp-sid-1", AccessToken: secret.New("at-web")})
			if err != nil {
				t.Fatal(err)
			}
			// The same cookie, presented at the other frontends.
			same, err := session.ParseHandle(h.Cookie().Reveal())
			if err != nil {
				t.Fatal(err)
			}
			for fe, m := range map[string]*session.Manager{"partners": partners, "one-frontend form": legacy} {
				if _, err := m.Load(ctx, same, true); !errors.Is(err, session.ErrNotFound) {
					t.Errorf("%s accepted web's session: %v", fe, err)
				}
				if err := m.Update(ctx, same, &session.Session{Subject: "alice", AccessToken: secret.New("at-evil")}); !errors.Is(err, session.ErrNotFound) {
					t.Errorf("%s updated web's session: %v", fe, err)
				}
			}
			s, err := web.Load(ctx, same, false)
			if err != nil || s.AccessToken.Reveal() != "at-web" {
				t.Fatalf("web lost its own session: %v", err)
			}
			// A back-channel logout at one frontend for the same IdP
			// session id (another IdP may issue it too) ends nothing of the
			// other's.
			if ids, err := partners.EndByIdPSession(ctx, "idp-sid-1", session.EndBackchannel); err != nil || len(ids) != 0 {
				t.Fatalf("partners.EndByIdPSession = %v, %v; want nothing ended", ids, err)
			}
			if s, err := web.Load(ctx, same, false); err != nil || s.IdPSessionID != "idp-sid-1" {
				t.Fatalf("web's session after partners' back-channel logout: %+v, %v", s, err)
			}
			// Revocation by subject at one frontend leaves the other's
			// sessions alone (each frontend's IdP issues its own subjects).
			if n, err := partners.DeleteBySubject(ctx, "alice"); err != nil || n != 0 {
				t.Fatalf("partners.DeleteBySubject = %d, %v; want 0", n, err)
			}
			infos, err := partners.List(ctx, "alice")
			if err != nil || len(infos) != 1 || infos[0].Frontend != "web" || infos[0].IdPSessionID != "idp-sid-1" {
				t.Fatalf("List = %+v, %v; want web's session, named as web's", infos, err)
			}
			if ids, err := web.EndByIdPSession(ctx, "idp-sid-1", session.EndBackchannel); err != nil || len(ids) != 1 {
				t.Fatalf("web.EndByIdPSession = %v, %v; want its session ended", ids, err)
			}
			h2, err := web.Create(ctx, &session.Session{Subject: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			if n, err := web.DeleteBySubject(ctx, "alice"); err != nil || n != 1 {
				t.Fatalf("web.DeleteBySubject = %d, %v; want 1", n, err)
			}
			if _, err := web.Load(ctx, h2, false); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("web session after DeleteBySubject: %v", err)
			}
		})
	}
}

// What DefaultLocalCacheTTL rests on: in one process, ending a session
// through every frontend's Manager in turn (as the admin API does, since an
// id does not say whose it is) drops the copy each of them cached, although
// only the first finds the record; ending by subject or IdP session at the
// session's own frontend drops its copy too. None waits for the TTL.
func TestEndingThroughEachManagerDropsEveryCachedCopy(t *testing.T) {
	ctx := context.Background()
	st := session.NewMemoryStore(nil)
	t.Cleanup(func() { st.Close() })
	mk := func(fe string) *session.Manager {
		m := session.NewManager(nopClose{st}, session.Options{Frontend: fe, CacheTTL: session.DefaultLocalCacheTTL, HealthInterval: -1})
		t.Cleanup(func() { m.Close() })
		return m
	}
	web, shop := mk("web"), mk("shop")
	fronts := []*session.Manager{web, shop}
	for _, end := range []struct {
		name string
		end  func(h session.Handle) error
	}{
		{"revoke through every frontend", func(h session.Handle) error {
			for _, m := range fronts {
				if _, err := m.Revoke(ctx, h.ID()); err != nil {
					return err
				}
			}
			return nil
		}},
		{"by subject through every frontend", func(session.Handle) error {
			for _, m := range fronts {
				if _, err := m.EndBySubject(ctx, "alice", session.EndRevoked); err != nil {
					return err
				}
			}
			return nil
		}},
		{"back-channel logout at its frontend", func(session.Handle) error {
			_, err := shop.EndByIdPSession(ctx, "sid-1", session.EndBackchannel)
			return err
		}},
	} {
		t.Run(end.name, func(t *testing.T) {
			h, err := shop.Create(ctx, userSession("alice", "sid-1"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := shop.Load(ctx, h, true); err != nil { // cached now
				t.Fatal(err)
			}
			if err := end.end(h); err != nil {
				t.Fatal(err)
			}
			if _, err := shop.Load(ctx, h, true); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("Load of an ended session at its frontend = %v, want ErrNotFound at once", err)
			}
		})
	}
}
