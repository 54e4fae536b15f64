//! The DynamoDB lease store against moto: the table is created when missing, and the store keeps the same contract
//! as the in-memory one (conditional takes, renewals and checkpoints; fencing of a lost owner).

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use chimewatch_stream::lease::dynamodb::DynamoLeaseStore;
use chimewatch_stream::lease::{LeaseStore, contract};

use crate::harness::{moto_url, unique};

pub fn client(moto: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(moto)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

#[tokio::test]
async fn the_dynamodb_store_creates_its_table_and_keeps_the_store_contract() {
    let moto = moto_url();
    let store = DynamoLeaseStore::open(client(&moto), &unique("it-leases")).await.expect("creating the lease table");
    contract::check(&store, "").await;
    // Opening again finds the table and its leases.
    let again = DynamoLeaseStore::open(client(&moto), &unique("it-leases")).await.unwrap();
    assert_eq!(again.list().await.unwrap().len(), 2);
}
