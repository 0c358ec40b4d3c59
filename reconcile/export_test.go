package reconcile

// SetKeep sets how many bytes of listed users a run keeps in memory
// between listing and writing them, so that a test takes the path that
// lists again.
func (r *Reconciler) SetKeep(n int) { r.keep = n }

// SetKeep sets how many bytes of listed organizations and memberships a
// run keeps in memory between listing and writing them.
func (r *OrganizationReconciler) SetKeep(n int) { r.keep = n }
