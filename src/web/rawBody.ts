export * from '../../core/http/rawBody.ts';
