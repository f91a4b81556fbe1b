package bundles

import "github.com/causewaymesh/causeway/trust"

// Clock and Timer are trust's: the Fetcher's time source.
type (
	Clock = trust.Clock
	Timer = trust.Timer
)

// SystemClock is the wall clock.
func SystemClock() Clock { return trust.SystemClock() }
