/**
 * Usage notices (and key-rotation notices) from a runtime to the control plane, signed like Stripe signs webhooks
 * (./timedSignature.ts): `X-Clawdbot-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, with the workspace named in
 * `X-Clawdbot-Workspace`. Shared by the runtime (which signs) and the control plane (which verifies).
 */
import { signTimed, timedSignatureValid } from './timedSignature.ts';

export const NOTICE_SIGNATURE_HEADER = 'x-clawdbot-signature';
export const NOTICE_WORKSPACE_HEADER = 'x-clawdbot-workspace';
export const NOTICE_PATH = '/api/runtime/usage';
/** A customer rotated their key through the runtime: `{ workspaceId, hash, label }`, signed the same way. */
export const KEY_ROTATED_PATH = '/api/runtime/key-rotated';

/** A notice's body is signed as it is: the content of the timed signature. */
export { signTimed as signNotice, timedSignatureValid as noticeSignatureValid };
