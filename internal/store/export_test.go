package store

// SetCommitFaults makes later commits fail: inTx inside the transaction
// (rolled back), afterTx after it committed (the file already shows it, as
// when only bbolt's final fsync fails). Call only while no write is in flight.
func (b *Bolt) SetCommitFaults(inTx, afterTx func() error) {
	b.faultInTx, b.faultAfterTx = inTx, afterTx
}

// SetCompactFault makes compactions stop with fault's error before each
// chunk after the first, as a crash there would.
func (b *Bolt) SetCompactFault(fault func() error) { b.faultCompactChunk = fault }
