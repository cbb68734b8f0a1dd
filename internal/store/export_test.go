package store

// SetCommitFaults makes later commits fail: inTx inside the transaction
// (rolled back), afterTx after it committed (the file already shows it, as
// when only bbolt's final fsync fails). Call only while no write is in flight.
func (b *Bolt) SetCommitFaults(inTx, afterTx func() error) {
	b.faultInTx, b.faultAfterTx = inTx, afterTx
}
