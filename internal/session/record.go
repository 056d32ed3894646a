package session

import (
	"encoding/binary"
	"errors"
	"time"
)

// recordVersion prefixes encoded records (bolt values).
const recordVersion byte = 2

// recordVersion1 is the format before records named their frontend; it is
// still read (as Frontend "").
const recordVersion1 byte = 1

var errCorruptRecord = errors.New("stored session record is corrupt")

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// marshalRecord encodes a record compactly: version, then length-prefixed
// strings, the four times as int64 ns, and the sealed payload.
func marshalRecord(r Record) []byte {
	b := make([]byte, 0, 1+len(r.ID)+len(r.Subject)+len(r.IdPSessionID)+len(r.Frontend)+len(r.Sealed)+4*8+5*binary.MaxVarintLen64)
	b = append(b, recordVersion)
	for _, s := range [...]string{r.ID, r.Subject, r.IdPSessionID, r.Frontend} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, t := range [...]time.Time{r.Created, r.LastSeen, r.IdleExpiry, r.AbsoluteExpiry} {
		b = binary.BigEndian.AppendUint64(b, uint64(unixNano(t)))
	}
	return append(b, r.Sealed...)
}

func unmarshalRecord(b []byte) (Record, error) {
	if len(b) == 0 || (b[0] != recordVersion && b[0] != recordVersion1) {
		return Record{}, errCorruptRecord
	}
	nstr := 4
	if b[0] == recordVersion1 {
		nstr = 3
	}
	b = b[1:]
	// The strings share one copy of their bytes (one allocation, not four).
	var spans [4][2]int
	off := 0
	for i := range spans[:nstr] {
		n, k := binary.Uvarint(b[off:])
		if k <= 0 || n > uint64(len(b)-off-k) {
			return Record{}, errCorruptRecord
		}
		spans[i] = [2]int{off + k, off + k + int(n)}
		off += k + int(n)
	}
	hdr := string(b[:off])
	var strs [4]string
	for i, sp := range spans[:nstr] {
		strs[i] = hdr[sp[0]:sp[1]]
	}
	b = b[off:]
	if len(b) < 4*8 {
		return Record{}, errCorruptRecord
	}
	var ts [4]time.Time
	for i := range ts {
		ts[i] = fromUnixNano(int64(binary.BigEndian.Uint64(b)))
		b = b[8:]
	}
	return Record{
		ID: strs[0], Subject: strs[1], IdPSessionID: strs[2], Frontend: strs[3],
		Created: ts[0], LastSeen: ts[1], IdleExpiry: ts[2], AbsoluteExpiry: ts[3],
		Sealed: append([]byte(nil), b...),
	}, nil
}
