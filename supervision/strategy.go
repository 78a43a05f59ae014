package supervision

// Strategy says which children are restarted when one of them exits and must
// be restarted (Elixir's :strategy).
type Strategy int

const (
	// OneForOne restarts only the child that exited. It is the zero value.
	OneForOne Strategy = iota
	// OneForAll restarts every running child, in start order.
	OneForAll
	// RestForOne restarts the child that exited and the children started
	// after it, in start order.
	RestForOne
)

func (s Strategy) String() string {
	switch s {
	case OneForOne:
		return "one_for_one"
	case OneForAll:
		return "one_for_all"
	case RestForOne:
		return "rest_for_one"
	}
	return "invalid"
}
