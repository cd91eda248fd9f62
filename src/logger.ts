export * from '../core/logger.ts';
