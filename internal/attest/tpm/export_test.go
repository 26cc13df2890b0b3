package tpm

// SimMu lets the external example tests share the one simulator the process
// may open.
var SimMu = &simMu
