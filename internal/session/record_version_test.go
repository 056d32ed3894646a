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
