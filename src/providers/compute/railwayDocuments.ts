/**
 * Every GraphQL document the Railway provider sends. A test validates each against Railway's published schema
 * (test/fixtures/railway/schema.graphql), so a field Railway does not have can never ship.
 */
export const RAILWAY_DOCUMENTS = {
  /**
   * Only to recover a service whose id was never recorded (Railway has no lookup by name), and for the reconciler's
   * listing (once per run).
   */
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
  /** Only when the service was not just created (a re-run may find the domain an earlier run made). */
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
  /**
   * A service's whole configuration in one request (mutations run in order): its variables, its limits, and what it
   * builds and runs.
   */
  configure: /* GraphQL */ `
    mutation Configure(
      $serviceId: String!
      $environmentId: String!
      $variables: VariableCollectionUpsertInput!
      $vCPUs: Float
      $memoryGB: Float
      $instance: ServiceInstanceUpdateInput!
    ) {
      variableCollectionUpsert(input: $variables)
      serviceInstanceLimitsUpdate(input: { serviceId: $serviceId, environmentId: $environmentId, vCPUs: $vCPUs, memoryGB: $memoryGB })
      serviceInstanceUpdate(serviceId: $serviceId, environmentId: $environmentId, input: $instance)
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
  deploymentRestart: /* GraphQL */ `
    mutation DeploymentRestart($id: String!) {
      deploymentRestart(id: $id)
    }`,
  deploymentRemove: /* GraphQL */ `
    mutation DeploymentRemove($id: String!) {
      deploymentRemove(id: $id)
    }`,
  /** The reconciler's read-back: what the service holds, to compare with what configure sets. */
  serviceSettings: /* GraphQL */ `
    query ServiceSettings($projectId: String!, $environmentId: String!, $serviceId: String!) {
      variables(projectId: $projectId, environmentId: $environmentId, serviceId: $serviceId)
      serviceInstanceLimitOverride(environmentId: $environmentId, serviceId: $serviceId)
    }`,
  serviceDelete: /* GraphQL */ `
    mutation ServiceDelete($id: String!, $environmentId: String) {
      serviceDelete(id: $id, environmentId: $environmentId)
    }`,
} as const;
