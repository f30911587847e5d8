package workerpool

import "time"

// waiter is a request waiting for a slot. Its channel receives exactly one value:
// a slot, or nil when the pool cannot serve.
type waiter struct {
	ch          chan *Lease
	since       time.Time
	pipelinable bool
}

// waitQueue is a FIFO of waiters. Removal of a waiter that gave up is O(n), which is
// fine: it only happens on timeouts and cancellations.
type waitQueue struct {
	items []*waiter
	head  int
}

func (q *waitQueue) len() int { return len(q.items) - q.head }

// oldest is when the longest-waiting request arrived; zero when none waits.
func (q *waitQueue) oldest() time.Time {
	if q.head == len(q.items) {
		return time.Time{}
	}
	return q.items[q.head].since
}

func (q *waitQueue) push(w *waiter) {
	if q.head > 64 && q.head*2 > len(q.items) {
		// Compact so a queue that never empties does not grow without bound.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, w)
}

func (q *waitQueue) peek() *waiter {
	if q.head == len(q.items) {
		return nil
	}
	return q.items[q.head]
}

func (q *waitQueue) pop() *waiter {
	if q.head == len(q.items) {
		return nil
	}
	w := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	return w
}

func (q *waitQueue) remove(w *waiter) bool {
	for i := q.head; i < len(q.items); i++ {
		if q.items[i] == w {
			copy(q.items[i:], q.items[i+1:])
			q.items[len(q.items)-1] = nil
			q.items = q.items[:len(q.items)-1]
			return true
		}
	}
	return false
}
