// Package config holds what the packages' Config types share: filling in
// a setting's default.
package config

// Default sets *p to def if *p holds the zero value: the one way every
// package fills in the defaults of its Config.
func Default[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
