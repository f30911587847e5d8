package workerpool

// workerState is where a worker is in its life. A worker only moves forward:
//
//	booting → ready → retiring → stopped
//	   └────────┴─────────────────↗  (killed, crashed, or failed to boot)
//
// Busy is not a state of the machine: a ready worker running requests is shown busy,
// so a request costs no transition.
type workerState int32

const (
	workerBooting  workerState = iota // importing the app; not in dispatch
	workerReady                       // in dispatch
	workerRetiring                    // out of dispatch, finishing its requests before it is stopped
	workerStopped                     // killed or exited: no request can run on it
	workerStates
)

func (s workerState) String() string {
	switch s {
	case workerBooting:
		return "booting"
	case workerReady:
		return "ready"
	case workerRetiring:
		return "retiring"
	case workerStopped:
		return "stopped"
	}
	return "unknown"
}

func workerTransition(from, to workerState) bool { return to > from }

// poolState is where a pool is in its life:
//
//	starting → ready ⇄ failing
//	    └────────┴───────┴──→ draining → stopped
type poolState int32

const (
	poolStarting poolState = iota // no worker ready yet, no boot failed yet
	poolReady                     // serving (or a worker is being replaced)
	poolFailing                   // no worker runs and the latest boot of every position failed: 503 at once
	poolDraining                  // Stop began: serving the requests that still come, then stopping
	poolStopped                   // closed: every request gets ErrClosed
	poolStates
)

func (s poolState) String() string {
	switch s {
	case poolStarting:
		return "starting"
	case poolReady:
		return "ready"
	case poolFailing:
		return "failing"
	case poolDraining:
		return "draining"
	case poolStopped:
		return "stopped"
	}
	return "unknown"
}

func poolTransition(from, to poolState) bool {
	switch to {
	case poolReady:
		return from == poolStarting || from == poolFailing
	case poolFailing:
		return from == poolStarting || from == poolReady
	case poolDraining:
		return from < poolDraining
	case poolStopped:
		return from == poolDraining
	}
	return false
}
