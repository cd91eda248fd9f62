/**
 * Every GraphQL document the Railway provider sends. A test validates each against Railway's published schema
 * (test/fixtures/railway/schema.graphql), so a field Railway does not have can never ship.
 */
export const RAILWAY_DOCUMENTS = {
  projectServices: /* GraphQL */ `
    query ProjectServices($projectId: String!, $after: String) {
      project(id: $projectId) {
        services(first: 100, after: $after) {
          edges { node { id name } }
          pageInfo { hasNextPage endCursor }
        }
      }
    }`,
  serviceCreate: /* GraphQL */ `
    mutation ServiceCreate($input: ServiceCreateInput!) {
      serviceCreate(input: $input) { id name }
    }`,
  serviceDomains: /* GraphQL */ `
    query ServiceDomains($projectId: String!, $environmentId: String!, $serviceId: String!) {
      domains(projectId: $projectId, environmentId: $environmentId, serviceId: $serviceId) {
        serviceDomains { id domain }
      }
    }`,
  serviceDomainCreate: /* GraphQL */ `
    mutation ServiceDomainCreate($serviceId: String!, $environmentId: String!, $targetPort: Int) {
      serviceDomainCreate(input: { serviceId: $serviceId, environmentId: $environmentId, targetPort: $targetPort }) { id domain }
    }`,
  variablesUpsert: /* GraphQL */ `
    mutation VariablesUpsert($input: VariableCollectionUpsertInput!) {
      variableCollectionUpsert(input: $input)
    }`,
  limitsUpdate: /* GraphQL */ `
    mutation LimitsUpdate($serviceId: String!, $environmentId: String!, $vCPUs: Float, $memoryGB: Float) {
      serviceInstanceLimitsUpdate(input: { serviceId: $serviceId, environmentId: $environmentId, vCPUs: $vCPUs, memoryGB: $memoryGB })
    }`,
  deploy: /* GraphQL */ `
    mutation Deploy($serviceId: String!, $environmentId: String!) {
      serviceInstanceDeployV2(serviceId: $serviceId, environmentId: $environmentId)
    }`,
  deploymentStatus: /* GraphQL */ `
    query DeploymentStatus($id: String!) {
      deployment(id: $id) { id status }
    }`,
  activeDeployments: /* GraphQL */ `
    query ActiveDeployments($serviceId: String!, $environmentId: String!) {
      serviceInstance(serviceId: $serviceId, environmentId: $environmentId) {
        activeDeployments { id status }
        latestDeployment { id status createdAt }
      }
    }`,
  deploymentRemove: /* GraphQL */ `
    mutation DeploymentRemove($id: String!) {
      deploymentRemove(id: $id)
    }`,
  serviceDelete: /* GraphQL */ `
    mutation ServiceDelete($id: String!, $environmentId: String) {
      serviceDelete(id: $id, environmentId: $environmentId)
    }`,
} as const;
