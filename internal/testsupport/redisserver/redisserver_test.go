package redisserver

import "testing"

func TestStartKillRestart(t *testing.T) {
	s := Start(t)
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("fresh server: %v", err)
	}
	s.Kill()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("killed server still answers")
	}
	s.Kill() // idempotent
	s.Restart()
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("restarted server: %v", err)
	}
	if s.URL() != "redis://"+s.Addr()+"/0" {
		t.Fatalf("URL = %s", s.URL())
	}
}
