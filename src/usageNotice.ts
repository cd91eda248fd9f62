export * from '../core/usageNotice.ts';
