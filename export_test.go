package usersync

import "context"

// NewContext returns a copy of ctx that carries id, as the middlewares do.
func NewContext(ctx context.Context, id *Identity) context.Context { return newContext(ctx, id) }

// DropWebhookTelemetry turns a webhook handler's instrumentation off.
func DropWebhookTelemetry(h any) { h.(*webhookHandler).tel = nil }
