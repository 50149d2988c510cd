package nfs41

import (
	"errors"
	"fmt"
)

// Status is an nfsstat4 other than NFS4_OK, as an error: errors.Is(err,
// ErrStale) tells whether a call failed with NFS4ERR_STALE.
type Status uint32

// The statuses tests assert on (RFC 8881 section 15.1).
const (
	ErrPerm              Status = 1
	ErrNoEnt             Status = 2
	ErrIO                Status = 5
	ErrAccess            Status = 13
	ErrExist             Status = 17
	ErrInval             Status = 22
	ErrStale             Status = 70
	ErrBadHandle         Status = 10001
	ErrNotSupp           Status = 10004
	ErrServerFault       Status = 10006
	ErrDelay             Status = 10008
	ErrDenied            Status = 10010
	ErrExpired           Status = 10011
	ErrGrace             Status = 10013
	ErrFHExpired         Status = 10014
	ErrShareDenied       Status = 10015
	ErrWrongSec          Status = 10016
	ErrClidInUse         Status = 10017
	ErrResource          Status = 10018
	ErrMoved             Status = 10019
	ErrNoFileHandle      Status = 10020
	ErrMinorVersMismatch Status = 10021
	ErrStaleClientID     Status = 10022
	ErrStaleStateID      Status = 10023
	ErrOldStateID        Status = 10024
	ErrBadStateID        Status = 10025
	ErrBadSeqID          Status = 10026
	ErrNoGrace           Status = 10033
	ErrReclaimBad        Status = 10034
	ErrReclaimConflict   Status = 10035
	ErrBadXDR            Status = 10036
	ErrOpenMode          Status = 10038
	ErrOpIllegal         Status = 10044
	ErrAdminRevoked      Status = 10047
	ErrBadSession        Status = 10052
	ErrBadSlot           Status = 10053
	ErrCompleteAlready   Status = 10054
	ErrConnNotBound      Status = 10055
	ErrSeqMisordered     Status = 10063
	ErrSequencePos       Status = 10064
	ErrOpNotInSession    Status = 10071
	ErrClientIDBusy      Status = 10074
	ErrDeadSession       Status = 10078
	ErrNotOnlyOp         Status = 10081
	ErrWrongCred         Status = 10082
)

var statusNames = map[Status]string{
	ErrPerm: "NFS4ERR_PERM", ErrNoEnt: "NFS4ERR_NOENT", ErrIO: "NFS4ERR_IO", ErrAccess: "NFS4ERR_ACCESS",
	ErrExist: "NFS4ERR_EXIST", ErrInval: "NFS4ERR_INVAL", ErrStale: "NFS4ERR_STALE", ErrBadHandle: "NFS4ERR_BADHANDLE",
	ErrNotSupp: "NFS4ERR_NOTSUPP", ErrServerFault: "NFS4ERR_SERVERFAULT", ErrDelay: "NFS4ERR_DELAY",
	ErrDenied: "NFS4ERR_DENIED", ErrExpired: "NFS4ERR_EXPIRED", ErrGrace: "NFS4ERR_GRACE",
	ErrFHExpired: "NFS4ERR_FHEXPIRED", ErrShareDenied: "NFS4ERR_SHARE_DENIED", ErrWrongSec: "NFS4ERR_WRONGSEC",
	ErrClidInUse: "NFS4ERR_CLID_INUSE", ErrResource: "NFS4ERR_RESOURCE", ErrMoved: "NFS4ERR_MOVED",
	ErrNoFileHandle: "NFS4ERR_NOFILEHANDLE", ErrMinorVersMismatch: "NFS4ERR_MINOR_VERS_MISMATCH",
	ErrStaleClientID: "NFS4ERR_STALE_CLIENTID", ErrStaleStateID: "NFS4ERR_STALE_STATEID",
	ErrOldStateID: "NFS4ERR_OLD_STATEID", ErrBadStateID: "NFS4ERR_BAD_STATEID", ErrBadSeqID: "NFS4ERR_BAD_SEQID",
	ErrNoGrace: "NFS4ERR_NO_GRACE", ErrReclaimBad: "NFS4ERR_RECLAIM_BAD", ErrReclaimConflict: "NFS4ERR_RECLAIM_CONFLICT",
	ErrBadXDR: "NFS4ERR_BADXDR", ErrOpenMode: "NFS4ERR_OPENMODE", ErrOpIllegal: "NFS4ERR_OP_ILLEGAL",
	ErrAdminRevoked: "NFS4ERR_ADMIN_REVOKED", ErrBadSession: "NFS4ERR_BADSESSION", ErrBadSlot: "NFS4ERR_BADSLOT",
	ErrCompleteAlready: "NFS4ERR_COMPLETE_ALREADY", ErrConnNotBound: "NFS4ERR_CONN_NOT_BOUND_TO_SESSION",
	ErrSeqMisordered: "NFS4ERR_SEQ_MISORDERED", ErrSequencePos: "NFS4ERR_SEQUENCE_POS",
	ErrOpNotInSession: "NFS4ERR_OP_NOT_IN_SESSION", ErrClientIDBusy: "NFS4ERR_CLIENTID_BUSY",
	ErrDeadSession: "NFS4ERR_DEADSESSION", ErrNotOnlyOp: "NFS4ERR_NOT_ONLY_OP", ErrWrongCred: "NFS4ERR_WRONG_CRED",
}

func (s Status) Error() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("NFS4ERR %d", uint32(s))
}

// OpError is a COMPOUND that failed at operation Op with Status.
type OpError struct {
	Op     string // e.g. "SEQUENCE", "OPEN"
	Status Status
}

func (e *OpError) Error() string { return fmt.Sprintf("nfs41: %s: %s", e.Op, e.Status) }
func (e *OpError) Unwrap() error { return e.Status }

// StatusOf returns the NFS4 status err carries, and false if it carries
// none (a transport or decoding error, or nil).
func StatusOf(err error) (Status, bool) {
	var s Status
	if errors.As(err, &s) {
		return s, true
	}
	return 0, false
}
