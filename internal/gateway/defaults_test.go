package gateway

import (
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/oidc"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// The OIDC client's fallbacks are the configuration's defaults: a default
// means one thing whichever package applies it. (config cannot import the
// stage packages, so the values are pinned here.)
func TestDefaultsAgree(t *testing.T) {
	if oidc.DefaultRefreshBeforeExpiry != config.DefaultRefreshBeforeExpiry {
		t.Errorf("refresh_before_expiry: oidc %v, config %v", oidc.DefaultRefreshBeforeExpiry, config.DefaultRefreshBeforeExpiry)
	}
	if session.DefaultCacheMemory != config.DefaultSessionCacheMemory {
		t.Errorf("session.cache_memory: session %d, config %d", session.DefaultCacheMemory, config.DefaultSessionCacheMemory)
	}
	if oidc.DefaultCSRFHeader != config.DefaultCSRFHeader {
		t.Errorf("csrf.header: oidc %q, config %q", oidc.DefaultCSRFHeader, config.DefaultCSRFHeader)
	}
}

// Only Redis is shared between instances, whose revocations reach the
// cache by pub/sub: its TTL stays the short backstop.
func TestSessionCacheTTL(t *testing.T) {
	for store, want := range map[config.StoreKind]time.Duration{
		config.StoreRedis:  session.DefaultCacheTTL,
		config.StoreBolt:   session.DefaultLocalCacheTTL,
		config.StoreMemory: session.DefaultLocalCacheTTL,
	} {
		if got := sessionCacheTTL(store); got != want {
			t.Errorf("sessionCacheTTL(%s) = %v, want %v", store, got, want)
		}
	}
}
