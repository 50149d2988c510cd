// Package nfs41 is a minimal NFSv4.1 client (RFC 8881) over TCP, for tests
// that must prove what an NFSv4.1 client sees: above all that it reclaims
// its opens during a grace period after a failover, with the same file
// handles, and never gets NFS4ERR_STALE. The machines have no kernel NFS
// client and libnfs speaks only NFSv4.0 (no sessions, no RECLAIM_COMPLETE).
//
// It speaks just what that takes: EXCHANGE_ID, CREATE_SESSION, SEQUENCE
// (one slot, first op of every COMPOUND), PUTROOTFH, PUTFH, LOOKUP, GETFH,
// GETATTR (size), OPEN (CLAIM_NULL, CLAIM_PREVIOUS), WRITE (FILE_SYNC4),
// READ, CLOSE, RECLAIM_COMPLETE and DESTROY_SESSION, with AUTH_SYS.
//
// The XDR and the ONC RPC framing are hand-written (xdr.go, rpc.go), a few
// small helpers, rather than built on go-nfs-client's rpc and go-xdr:
// a COMPOUND reply is a list of discriminated unions, one per operation,
// that is decoded step by step and stops at the first failed operation,
// which the reflection-based go-xdr cannot express without a Go type per
// reply shape; and go-nfs-client's rpc.Client reconnects silently to the
// same address and has no deadline per call, while a failover test must
// see each broken connection and bound every call by its context.
//
// Errors from the server are Status values (NFS4ERR_*), so that a test can
// assert which one it got, e.g. errors.Is(err, nfs41.ErrStale).
package nfs41
