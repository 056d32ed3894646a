package ratelimit

import (
	"net/netip"
	"testing"
)

func TestAddrKey(t *testing.T) {
	cases := []struct{ addr, want string }{
		{"192.0.2.1", "ip:192.0.2.1"},
		{"::ffff:192.0.2.1", "ip:192.0.2.1"},
		// Every address of one /64 is one caller.
		{"2001:db8:1:2:3:4:5:6", "ip:2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "ip:2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "ip:2001:db8:1:3::/64"},
		{"fe80::1%eth0", "ip:fe80::/64"},
		{"::1", "ip:::/64"},
	}
	for _, tc := range cases {
		if got := AddrKey(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("AddrKey(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
