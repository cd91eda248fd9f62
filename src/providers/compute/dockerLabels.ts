/**
 * The labels the Docker compute provider puts on its containers and network; the socket proxy lets a control plane act
 * only on what carries its value of the scope label.
 */
export const DOCKER_LABELS = { scope: 'ai.clawdbot.scope', service: 'ai.clawdbot.service', workspace: 'ai.clawdbot.workspace' } as const;
