package supervision

// Restart says when a child is restarted after it exits (Elixir's :restart).
type Restart int

const (
	// Permanent children are always restarted. It is the zero value.
	Permanent Restart = iota
	// Transient children are restarted only after an abnormal exit (a panic).
	Transient
	// Temporary children are never restarted; their spec is deleted when they exit.
	Temporary
)

func (r Restart) String() string {
	switch r {
	case Permanent:
		return "permanent"
	case Transient:
		return "transient"
	case Temporary:
		return "temporary"
	}
	return "invalid"
}

// restarts reports whether an exit (abnormal or not) leads to a restart.
func (r Restart) restarts(abnormal bool) bool {
	return r == Permanent || (r == Transient && abnormal)
}
