package orgs

import (
	"errors"

	"github.com/usersync/usersync"
)

// Errors of the package, checked with errors.Is. ErrNotFound and ErrDeleted
// wrap usersync's sentinels of the same name, so code written for users
// handles them too.
var (
	// ErrNotFound reports that no live organization or membership matches.
	ErrNotFound error = &sentinel{text: "orgs: organization or membership not found", also: usersync.ErrNotFound}
	// ErrDeleted reports an organization or membership that was deleted, or
	// a membership write for a deleted organization or user: deletion is
	// final. It wraps ErrNotFound.
	ErrDeleted error = &sentinel{text: "orgs: organization or membership was deleted", also: usersync.ErrDeleted, parent: ErrNotFound}
	// ErrNotMember reports a user without a live membership of a live
	// organization, or without a role the route asks for: RequireMember
	// answers it 403.
	ErrNotMember = errors.New("orgs: not a member of the organization")
)

// sentinel is an error of this package that also is one of usersync's.
type sentinel struct {
	text   string
	also   error // usersync's sentinel it stands for
	parent error // a sentinel of this package it wraps, or nil
}

func (e *sentinel) Error() string { return e.text }

// Is reports whether target is this error or one of usersync's it
// stands for.
func (e *sentinel) Is(target error) bool {
	return target == e || errors.Is(e.also, target) || (e.parent != nil && errors.Is(e.parent, target))
}
