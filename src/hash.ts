export * from '../core/hash.ts';
