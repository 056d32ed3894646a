package session

import (
	"encoding/binary"
	"testing"
	"time"
)

// Records written before they named their frontend (version 1) still load,
// as sessions of the one-frontend form; new records keep their frontend.
func TestRecordVersions(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	v1 := []byte{recordVersion1}
	for _, s := range []string{"id1", "alice", "sid"} {
		v1 = binary.AppendUvarint(v1, uint64(len(s)))
		v1 = append(v1, s...)
	}
	for range 4 {
		v1 = binary.BigEndian.AppendUint64(v1, uint64(ts.UnixNano()))
	}
	v1 = append(v1, "sealed"...)
	r, err := unmarshalRecord(v1)
	if err != nil || r.ID != "id1" || r.Subject != "alice" || r.Frontend != "" || string(r.Sealed) != "sealed" || !r.Created.Equal(ts) {
		t.Fatalf("v1 record = %+v, %v", r, err)
	}
	r.Frontend = "partners"
	back, err := unmarshalRecord(marshalRecord(r))
	if err != nil || back.Frontend != "partners" || back.Subject != "alice" || string(back.Sealed) != "sealed" {
		t.Fatalf("v2 round trip = %+v, %v", back, err)
	}
}

// A truncated or garbled record is corrupt, never a panic or a record with
// fields read from the wrong bytes.
func TestRecordCorrupt(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := Record{ID: "id1", Subject: "alice", IdPSessionID: "p\x1fsid", Frontend: "p",
		Created: ts, LastSeen: ts, IdleExpiry: ts, AbsoluteExpiry: ts, Sealed: []byte("sealed")}
	b := marshalRecord(r)
	back, err := unmarshalRecord(b)
	if err != nil || back.ID != r.ID || back.Subject != r.Subject || back.IdPSessionID != r.IdPSessionID ||
		back.Frontend != r.Frontend || !back.LastSeen.Equal(ts) || string(back.Sealed) != "sealed" {
		t.Fatalf("round trip = %+v, %v", back, err)
	}
	fixed := len(b) - len(r.Sealed) // everything but the sealed payload
	for n := range fixed {
		if _, err := unmarshalRecord(b[:n]); err != errCorruptRecord {
			t.Errorf("record cut to %d bytes: err = %v, want errCorruptRecord", n, err)
		}
	}
	huge := append([]byte{recordVersion}, binary.AppendUvarint(nil, 1<<62)...)
	if _, err := unmarshalRecord(append(huge, make([]byte, 64)...)); err != errCorruptRecord {
		t.Errorf("string length past the end: err = %v", err)
	}
	// The record's bytes may be reused by the store (bolt's are only valid
	// in the transaction): nothing decoded may alias them.
	clear(b)
	if back.Subject != "alice" || string(back.Sealed) != "sealed" {
		t.Errorf("decoded record aliases the stored bytes: %+v", back)
	}
}
