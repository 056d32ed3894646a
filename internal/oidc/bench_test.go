package oidc

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// BenchmarkAccessTokenFresh measures the proxy's hot path: a session whose
// access token is not near expiry (no lock, no store, no IdP).
func BenchmarkAccessTokenFresh(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	h := &Handler{opts: Options{Clock: func() time.Time { return now }, RefreshBeforeExpiry: time.Minute}}
	tk := &Tokens{h: h}
	hnd, _ := session.NewHandle()
	s := &session.Session{ID: hnd.ID(), AccessToken: secret.New("at"), AccessTokenExpiry: now.Add(time.Hour)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tk.AccessToken(ctx, hnd, s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateReturnURL(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ValidateReturnURL("/app/orders/42?tab=items#top"); err != nil {
			b.Fatal(err)
		}
	}
}
