package orgs

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/usersync/usersync"
)

// Member returns the live membership of user in the organization orgID of
// the user's issuer, with the organization, in one read of the store:
// the check behind RequireMember, for code outside a request. Roles, if
// given, are the roles admitted (see Membership.HasRole). It fails with
// ErrNotFound (or ErrDeleted) for an organization that is not stored (or
// was deleted), ErrNotMember for a user without a live membership in one
// of the roles, and the store's error otherwise.
func (s *Syncer) Member(ctx context.Context, user usersync.User, orgID string, roles ...string) (Member, error) {
	m, err := s.store.Member(ctx, user.Issuer, orgID, user.Subject)
	if err != nil {
		return Member{}, err
	}
	if !m.Membership.HasRole(roles...) {
		return Member{}, ErrNotMember
	}
	return m, nil
}

// RequireMember returns the middleware of an organization's routes: it
// sits behind usersync's RequireUser (whose user it reads from the
// context), finds the organization's provider ID in the request with
// orgID (r.PathValue("orgId"), say), and passes the request on, with the
// Member in its context (MemberFromContext), only if the user is a live
// member of the live organization in one of roles (any role if none).
// Otherwise Config.ErrorHandler answers: 404 for an organization not
// stored or deleted, 403 for a non-member or another role, 401 without a
// user in the context, 500 when the store fails. The store decides, not
// the token: a member removed a second ago is refused though their token
// still names the organization.
func (s *Syncer) RequireMember(orgID func(*http.Request) string, roles ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			u, ok := usersync.UserFromContext(ctx)
			if !ok {
				s.fail(w, r, http.StatusUnauthorized, usersync.ErrNoToken)
				return
			}
			m, err := s.Member(ctx, u, orgID(r), roles...)
			switch {
			case err == nil:
				next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, memberKey{}, &m)))
			case errors.Is(err, ErrNotMember):
				s.fail(w, r, http.StatusForbidden, err)
			case errors.Is(err, ErrNotFound), errors.Is(err, usersync.ErrInvalid):
				s.fail(w, r, http.StatusNotFound, err)
			default:
				s.log.ErrorContext(ctx, "usersync: membership check failed", "error", err)
				s.fail(w, r, http.StatusInternalServerError, err)
			}
		})
	}
}

func (s *Syncer) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	if s.log.Enabled(r.Context(), slog.LevelDebug) && status < 500 {
		s.log.DebugContext(r.Context(), "usersync: membership check refused", "status", status, "error", err)
	}
	if s.cfg.ErrorHandler != nil {
		s.cfg.ErrorHandler(w, r, status, err)
		return
	}
	http.Error(w, http.StatusText(status), status)
}

type memberKey struct{}

// MemberFromContext returns the Member RequireMember admitted the request
// with.
func MemberFromContext(ctx context.Context) (Member, bool) {
	m, ok := ctx.Value(memberKey{}).(*Member)
	if !ok {
		return Member{}, false
	}
	return *m, true
}
