export * from '../core/apiKey.ts';
