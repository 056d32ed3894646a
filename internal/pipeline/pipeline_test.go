package pipeline

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/session"
)

type fakeID struct {
	name   string
	header string // recognised when this header is present
	cookie bool
}

func (f fakeID) Recognises(r *http.Request) bool { return r.Header.Get(f.header) != "" }
func (f fakeID) CookieBorne() bool               { return f.cookie }
func (f fakeID) Identify(context.Context, *Request) *Refusal {
	return nil
}

func TestChainFirstRecognisingIdentifierWinsAndMixedCredentialsAreRefused(t *testing.T) {
	cookie := fakeID{name: "cookie", header: "Cookie", cookie: true}
	agent := fakeID{name: "agent", header: "Authorization"}
	agent2 := fakeID{name: "agent2", header: "Authorization"}
	chain := Chain{cookie, agent, agent2}
	tests := []struct {
		name    string
		hdr     map[string]string
		want    string
		refused string
	}{
		{"none", nil, "", ""},
		{"cookie", map[string]string{"Cookie": "gh=1"}, "cookie", ""},
		{"authorization: first of two wins", map[string]string{"Authorization": "Bearer gha_x"}, "agent", ""},
		{"cookie and authorization: ambiguous", map[string]string{"Cookie": "gh=1", "Authorization": "DPoP x"}, "", "ambiguous_credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			id, ref := chain.Find(r)
			if tc.refused != "" {
				if ref == nil || ref.Code != tc.refused || ref.Status != http.StatusBadRequest || id != nil {
					t.Fatalf("Find = %v, %v; want refusal %s", id, ref, tc.refused)
				}
				return
			}
			if ref != nil {
				t.Fatalf("refused: %v", ref)
			}
			got := ""
			if id != nil {
				got = id.(fakeID).name
			}
			if got != tc.want {
				t.Errorf("identifier %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCallerKey(t *testing.T) {
	h, err := session.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("192.0.2.7")
	for _, tc := range []struct {
		c    Caller
		want string
	}{
		{Caller{IP: ip}, "ip:192.0.2.7"},
		{Caller{Kind: SessionCookie, SessionID: "s1", IP: ip}, "session:s1"},
		{Caller{Kind: AgentBearer, Agent: &Agent{Name: "bot", ID: "g1"}, IP: ip}, "agent:g1"},
		{Caller{Kind: Native, Handle: h, IP: ip}, "native:" + h.ID()},
	} {
		if got := tc.c.Key(); got != tc.want {
			t.Errorf("%v: Key() = %q, want %q", tc.c.Kind, got, tc.want)
		}
	}
}

func TestRefusalWritesJSONWithHeadersAndIsAnError(t *testing.T) {
	r := &Refusal{Status: 405, Code: "method_not_allowed", Message: "route a allows GET", Header: http.Header{"Allow": {"GET"}}}
	w := httptest.NewRecorder()
	r.Write(w)
	if w.Code != 405 || w.Header().Get("Allow") != "GET" || !strings.Contains(w.Body.String(), `"error":"method_not_allowed"`) {
		t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
	}
	var err error = r
	if !strings.HasPrefix(err.Error(), "method_not_allowed: ") {
		t.Errorf("Error() = %q", err.Error())
	}
}
