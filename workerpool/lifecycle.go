package workerpool

import (
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
)

// state is a lifecycle state: a small number with a name.
type state interface {
	~int32
	String() string
}

// lifecycle is an explicit state machine (FrankenPHP's internal/state): the current
// state, read with one atomic load, the transitions allowed, and a channel per state
// closed the first time the machine enters it, so a caller waits in a select instead of
// polling. Transitions are logged at debug level.
type lifecycle[S state] struct {
	cur     atomic.Int32
	mu      sync.Mutex      // serialises transitions
	entered []chan struct{} // by state
	allowed func(from, to S) bool
	log     *zap.Logger
	subject string           // "worker", "pool": the log message
	field   func() zap.Field // who, in the log (a worker's pid); nil: nobody but the logger's fields
}

func newLifecycle[S state](initial S, states int, allowed func(from, to S) bool, subject string, log *zap.Logger, field func() zap.Field) *lifecycle[S] {
	l := &lifecycle[S]{entered: make([]chan struct{}, states), allowed: allowed, log: log, subject: subject, field: field}
	for i := range l.entered {
		l.entered[i] = make(chan struct{})
	}
	l.cur.Store(int32(initial))
	close(l.entered[initial])
	return l
}

// Get returns the current state.
func (l *lifecycle[S]) Get() S { return S(l.cur.Load()) }

// Is reports whether the current state is s.
func (l *lifecycle[S]) Is(s S) bool { return l.cur.Load() == int32(s) }

// To moves to s when the transition from the current state is allowed, and reports
// whether it did. Moving to the current state is not a transition: false.
func (l *lifecycle[S]) To(s S) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	from := S(l.cur.Load())
	if from == s || !l.allowed(from, s) {
		return false
	}
	l.cur.Store(int32(s))
	select {
	case <-l.entered[s]:
	default:
		close(l.entered[s])
	}
	if ce := l.log.Check(zap.DebugLevel, l.subject+" state"); ce != nil {
		fields := []zap.Field{zap.Stringer("from", from), zap.Stringer("to", s)}
		if l.field != nil {
			fields = append(fields, l.field())
		}
		ce.Write(fields...)
	}
	return true
}

// Entered returns a channel closed once the machine has entered s (it may have left it
// since).
func (l *lifecycle[S]) Entered(s S) <-chan struct{} { return l.entered[s] }
