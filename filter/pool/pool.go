package pool

// Pool is an immutable snapshot of one pool's endpoints.
type Pool struct {
	Name      string
	Endpoints []*Endpoint
}
