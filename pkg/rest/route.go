package rest

import (
	"net/http"
	"reflect"
)

// access is who may call a route at all; object-level checks happen in the handlers.
type access int

const (
	public  access = iota // no token
	user                  // any valid token
	service               // admin or a partition component (service token)
	admin                 // admin only
)

// none is the body of a route without request body.
type none struct{}

// route is one REST operation: the single source of both the server's mux and the OpenAPI spec.
type route struct {
	method  string
	path    string
	opID    string
	tag     string
	summary string
	access  access
	in, out reflect.Type
	query   []string // names of string/integer query parameters
	status  int
	handle  func(c *call) (any, error)
}

func op[In, Out any](method, path, opID, summary string, acc access, fn func(c *call, in *In) (*Out, error)) route {
	r := route{
		method: method, path: path, opID: opID, summary: summary, access: acc,
		in: reflect.TypeFor[In](), out: reflect.TypeFor[Out](), status: http.StatusOK,
	}
	if r.in == reflect.TypeFor[none]() {
		r.in = nil
	}
	r.handle = func(c *call) (any, error) {
		in := new(In)
		if r.in != nil {
			if err := decode(c.r, in); err != nil {
				return nil, err
			}
		}
		return fn(c, in)
	}
	return r
}

func (r route) withQuery(names ...string) route {
	r.query = append(r.query, names...)
	return r
}

func (r route) created() route {
	r.status = http.StatusCreated
	return r
}
