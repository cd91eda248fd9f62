export * from '../../core/http/httpError.ts';
