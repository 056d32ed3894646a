package proxy

import (
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP is the peer's address, or, when the peer is in trusted, the
// nearest untrusted address it reports in X-Forwarded-For. Shared with the
// OIDC handler's per-client limits.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if !isTrusted(ip, trusted) {
		return ip
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return ip
			}
			a = a.Unmap()
			if !isTrusted(a, trusted) {
				return a
			}
			ip = a
		}
	}
	return ip
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, pre := range trusted {
		if pre.Contains(ip) {
			return true
		}
	}
	return false
}

// ClientIPFunc is ClientIP as a string, for options that name the client.
func ClientIPFunc(trusted []netip.Prefix) func(*http.Request) string {
	return func(r *http.Request) string { return ClientIP(r, trusted).String() }
}
