//! Schemas of the answers that handlers build as `serde_json::Value` (Mesh's models, filled field by field from
//! the integrations' replies): they have no Rust type to derive from, so their shape is written here, next to
//! the derived ones, and the `openapi` test pins the document the server serves against `docs/openapi.json`.
//! A handler that starts answering a field not listed here is caught by the fuzzer's schema checks
//! (`scripts/fuzz.sh`), not by the compiler: give such an answer a wire type when it next changes.

json_schema!(
    AuthenticationSchemes,
    r##"{
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "brokerType": {
                "type": "string"
            },
            "authenticationSchemeType": {
                "type": "string",
                "enum": [
                    "oAuth",
                    "usernamePassword",
                    "apiKey"
                ]
            },
            "initialAuthenticationModel": {
                "type": "object",
                "properties": {
                    "fields": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {
                                    "type": "string"
                                },
                                "description": {
                                    "type": "string"
                                }
                            }
                        }
                    }
                }
            },
            "mfaSchemes": {
                "type": "array",
                "items": {
                    "type": "string"
                }
            }
        }
    }
}"##
);

json_schema!(
    B2BBrokerRefreshTokenResponse,
    r##"{
    "type": "object",
    "properties": {
        "status": {
            "type": "string",
            "enum": [
                "succeeded"
            ]
        },
        "expiresInSeconds": {
            "type": "integer",
            "description": "The new access token's lifetime"
        },
        "refreshTokenExpiresInSeconds": {
            "type": [
                "integer",
                "null"
            ],
            "description": "The refresh token's remaining life (null: no end)"
        },
        "brokerAccountTokens": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "account": {
                        "type": "object",
                        "properties": {
                            "accountId": {
                                "type": "string"
                            },
                            "accountName": {
                                "type": "string"
                            },
                            "meshAccountId": {
                                "type": "string"
                            }
                        }
                    },
                    "accessToken": {
                        "type": "string",
                        "description": "The new access token (lva_…)"
                    },
                    "refreshToken": {
                        "type": "string",
                        "description": "The new refresh token with createNewRefreshToken, else the presented one (still valid)"
                    }
                }
            }
        }
    }
}"##
);

json_schema!(
    TransferFee,
    r##"{
    "type": [
        "object",
        "null"
    ],
    "properties": {
        "fee": {
            "type": "number"
        },
        "feeCurrency": {
            "type": "string"
        },
        "feeInFiat": {
            "type": "number"
        }
    }
}"##
);

json_schema!(
    PreviewTransferResponse,
    r##"{
    "type": "object",
    "properties": {
        "status": {
            "type": "string",
            "enum": [
                "succeeded"
            ]
        },
        "previewResult": {
            "type": "object",
            "properties": {
                "previewId": {
                    "type": "string",
                    "format": "uuid"
                },
                "previewExpiresIn": {
                    "type": "integer",
                    "description": "Seconds (300)"
                },
                "fromAddress": {
                    "type": [
                        "string",
                        "null"
                    ]
                },
                "toAddress": {
                    "type": "string"
                },
                "addressTag": {
                    "type": [
                        "string",
                        "null"
                    ]
                },
                "symbol": {
                    "type": "string"
                },
                "amount": {
                    "type": "number",
                    "description": "What the destination receives"
                },
                "amountInFiat": {
                    "type": "number"
                },
                "totalEstimatedAmount": {
                    "type": "number",
                    "description": "What leaves the account, fees included"
                },
                "totalEstimatedAmountInFiat": {
                    "type": "number"
                },
                "networkId": {
                    "type": "string",
                    "format": "uuid"
                },
                "networkName": {
                    "type": "string"
                },
                "institutionTransferFee": {
                    "$ref": "#/components/schemas/TransferFee"
                },
                "estimatedNetworkGasFee": {
                    "$ref": "#/components/schemas/TransferFee"
                },
                "unitPrice": {
                    "type": "number"
                },
                "clientTransactionId": {
                    "type": [
                        "string",
                        "null"
                    ]
                },
                "isInclusiveFeeEnabled": {
                    "type": "boolean"
                },
                "fiatCurrency": {
                    "type": "string"
                }
            }
        }
    }
}"##
);

json_schema!(
    ExecuteTransferResponse,
    r##"{
    "type": "object",
    "properties": {
        "status": {
            "type": "string",
            "enum": [
                "succeeded",
                "inProgress",
                "mfaRequired",
                "mfaFailed",
                "failed"
            ]
        },
        "errorMessage": {
            "type": [
                "string",
                "null"
            ]
        },
        "mfaType": {
            "type": "string",
            "description": "With mfaRequired: the second factor the exchange asks for (execute again with mfaCode)"
        },
        "executeTransferResult": {
            "type": [
                "object",
                "null"
            ],
            "properties": {
                "transferId": {
                    "type": "string"
                },
                "status": {
                    "type": "string",
                    "enum": [
                        "succeeded",
                        "pending",
                        "failed"
                    ]
                },
                "statusDetails": {
                    "type": "string"
                },
                "fromAddress": {
                    "type": [
                        "string",
                        "null"
                    ]
                },
                "toAddress": {
                    "type": "string"
                },
                "symbol": {
                    "type": "string"
                },
                "networkName": {
                    "type": "string"
                },
                "networkId": {
                    "type": "string",
                    "format": "uuid"
                },
                "hash": {
                    "type": [
                        "string",
                        "null"
                    ]
                },
                "amount": {
                    "type": "number"
                },
                "amountInFiat": {
                    "type": "number"
                },
                "totalAmountInFiat": {
                    "type": "number"
                },
                "institutionTransferFee": {
                    "$ref": "#/components/schemas/TransferFee"
                },
                "networkGasFee": {
                    "$ref": "#/components/schemas/TransferFee"
                }
            }
        }
    }
}"##
);

json_schema!(
    HoldingsModel,
    r##"{
    "type": "object",
    "required": [
        "status",
        "type"
    ],
    "properties": {
        "status": {
            "type": "string",
            "enum": [
                "succeeded",
                "notAuthorized"
            ],
            "description": "notAuthorized: the end user must sign in again (Link re-authenticates onto the same tokenId)"
        },
        "errorMessage": {
            "type": [
                "string",
                "null"
            ]
        },
        "displayMessage": {
            "type": [
                "string",
                "null"
            ]
        },
        "type": {
            "type": "string"
        },
        "accountId": {
            "type": [
                "string",
                "null"
            ]
        },
        "accountName": {
            "type": [
                "string",
                "null"
            ]
        },
        "institutionName": {
            "type": "string"
        },
        "cryptocurrencyPositions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string"
                    },
                    "symbol": {
                        "type": "string"
                    },
                    "amount": {
                        "type": "number"
                    },
                    "costBasis": {
                        "type": [
                            "number",
                            "null"
                        ]
                    },
                    "lastPrice": {
                        "type": [
                            "number",
                            "null"
                        ]
                    },
                    "marketValue": {
                        "type": [
                            "number",
                            "null"
                        ]
                    }
                }
            }
        },
        "equityPositions": {
            "type": "array"
        },
        "notSupportedEquityPositions": {
            "type": "array"
        },
        "notSupportedCryptocurrencyPositions": {
            "type": "array"
        },
        "nftPositions": {
            "type": "array"
        },
        "optionPositions": {
            "type": "array"
        }
    }
}"##
);

json_schema!(
    BalanceModel,
    r##"{
    "type": "object",
    "required": [
        "balances"
    ],
    "properties": {
        "balances": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "cash": {
                        "type": "number"
                    },
                    "buyingPower": {
                        "type": "number"
                    },
                    "cryptocurrencyBuyingPower": {
                        "type": "number"
                    },
                    "currencyCode": {
                        "type": "string"
                    }
                }
            }
        },
        "totalCashUsdValue": {
            "type": "number"
        },
        "totalBuyingPowerUsdValue": {
            "type": "number"
        }
    }
}"##
);

json_schema!(
    HoldingsValueModel,
    r##"{
    "type": "object",
    "properties": {
        "totalValue": {
            "type": "number"
        },
        "totalPerformance": {
            "type": "number"
        },
        "equitiesValue": {
            "type": "number"
        },
        "equitiesPerformance": {
            "type": "number"
        },
        "cryptocurrenciesValue": {
            "type": "number"
        },
        "cryptocurrenciesPerformance": {
            "type": "number"
        },
        "nftsValue": {
            "type": "number"
        },
        "fiatValue": {
            "type": "number"
        }
    }
}"##
);

json_schema!(
    PortfolioModel,
    r##"{
    "type": "object",
    "description": "Mesh's B2BPortfolioModel, over every connection of the user",
    "properties": {
        "portfolioCostBasis": {
            "type": [
                "number",
                "null"
            ]
        },
        "actualPortfolioPerformance": {
            "type": [
                "number",
                "null"
            ]
        },
        "equitiesValue": {
            "type": "number"
        },
        "cryptocurrenciesValue": {
            "type": "number"
        },
        "nftsValue": {
            "type": "number"
        },
        "equityPositions": {
            "type": "array"
        },
        "nftPositions": {
            "type": "array"
        },
        "cryptocurrencyPositions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string"
                    },
                    "symbol": {
                        "type": "string"
                    },
                    "amount": {
                        "type": "number"
                    },
                    "costBasis": {
                        "type": [
                            "number",
                            "null"
                        ]
                    },
                    "lastPrice": {
                        "type": [
                            "number",
                            "null"
                        ]
                    },
                    "marketValue": {
                        "type": [
                            "number",
                            "null"
                        ]
                    },
                    "portfolioPercentage": {
                        "type": [
                            "number",
                            "null"
                        ]
                    },
                    "totalReturn": {
                        "type": [
                            "number",
                            "null"
                        ]
                    },
                    "returnPercentage": {
                        "type": [
                            "number",
                            "null"
                        ]
                    },
                    "companyName": {
                        "type": [
                            "string",
                            "null"
                        ]
                    },
                    "totalDailyReturn": {
                        "type": [
                            "number",
                            "null"
                        ]
                    },
                    "dailyReturnPercentage": {
                        "type": [
                            "number",
                            "null"
                        ]
                    }
                }
            }
        }
    }
}"##
);

json_schema!(
    FiatPortfolioModel,
    r##"{
    "type": "object",
    "description": "Mesh's B2BFiatPortfolioModel",
    "properties": {
        "fiatBalances": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "symbol": {
                        "type": "string"
                    },
                    "cash": {
                        "type": "number"
                    },
                    "buyingPower": {
                        "type": "number"
                    }
                }
            }
        }
    }
}"##
);

json_schema!(
    TransfersListModel,
    r##"{
    "type": "object",
    "properties": {
        "total": {
            "type": "integer"
        },
        "cursor": {
            "type": [
                "string",
                "null"
            ]
        },
        "earliestTimestamp": {
            "type": "integer"
        },
        "transfers": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {
                        "type": "string"
                    },
                    "status": {
                        "type": "string",
                        "enum": [
                            "pending",
                            "succeeded",
                            "failed"
                        ]
                    },
                    "statusDetails": {
                        "type": "string"
                    },
                    "type": {
                        "type": "string",
                        "enum": [
                            "deposit",
                            "withdrawal"
                        ]
                    },
                    "fromAddress": {
                        "type": [
                            "string",
                            "null"
                        ]
                    },
                    "targetAddress": {
                        "type": "string"
                    },
                    "symbol": {
                        "type": "string"
                    },
                    "chain": {
                        "type": [
                            "string",
                            "null"
                        ]
                    },
                    "hash": {
                        "type": [
                            "string",
                            "null"
                        ]
                    },
                    "amount": {
                        "type": "number"
                    },
                    "transactionAmount": {
                        "type": "number"
                    },
                    "createdTimestamp": {
                        "type": "integer"
                    },
                    "updatedTimestamp": {
                        "type": "integer"
                    },
                    "transferFee": {
                        "type": [
                            "number",
                            "null"
                        ]
                    }
                }
            }
        }
    }
}"##
);

json_schema!(
    DepositAddressModel,
    r##"{
    "type": "object",
    "properties": {
        "symbol": {
            "type": "string"
        },
        "address": {
            "type": "string"
        },
        "chain": {
            "type": "string"
        },
        "memo": {
            "type": [
                "string",
                "null"
            ]
        },
        "minimumDepositAmount": {
            "type": [
                "string",
                "null"
            ]
        },
        "networkId": {
            "type": "string",
            "format": "uuid"
        },
        "brokerResponseStatus": {
            "type": [
                "string",
                "null"
            ]
        },
        "errorMessage": {
            "type": [
                "string",
                "null"
            ]
        }
    }
}"##
);

json_schema!(
    NetworksModel,
    r##"{
    "type": "object",
    "properties": {
        "networks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {
                        "type": "string",
                        "format": "uuid"
                    },
                    "name": {
                        "type": "string"
                    },
                    "chainId": {
                        "type": "string"
                    },
                    "logoUrl": {
                        "type": [
                            "string",
                            "null"
                        ]
                    },
                    "supportedTokens": {
                        "type": "array",
                        "items": {
                            "type": "string"
                        }
                    },
                    "nativeSymbol": {
                        "type": "string"
                    },
                    "networkType": {
                        "type": "string"
                    },
                    "tokens": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "symbol": {
                                    "type": "string"
                                },
                                "logoUrl": {
                                    "type": [
                                        "string",
                                        "null"
                                    ]
                                }
                            }
                        }
                    },
                    "supportedBrokerTypes": {
                        "type": "array",
                        "items": {
                            "type": "string"
                        }
                    }
                }
            }
        }
    }
}"##
);

json_schema!(
    TokensModel,
    r##"{
    "type": "object",
    "properties": {
        "tokens": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "token": {
                        "type": "string"
                    },
                    "networks": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {
                                    "type": "string",
                                    "format": "uuid"
                                },
                                "name": {
                                    "type": "string"
                                },
                                "chainId": {
                                    "type": "string"
                                },
                                "logoUrl": {
                                    "type": [
                                        "string",
                                        "null"
                                    ]
                                }
                            }
                        }
                    },
                    "supportedIntegrations": {
                        "type": "array",
                        "items": {
                            "type": "string"
                        }
                    },
                    "integrationNetworks": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "networkId": {
                                    "type": "string"
                                },
                                "netwokName": {
                                    "type": "string"
                                },
                                "innerNetworkId": {
                                    "type": "string"
                                },
                                "networkLogo": {
                                    "type": [
                                        "string",
                                        "null"
                                    ]
                                },
                                "brokerType": {
                                    "type": "string"
                                }
                            }
                        }
                    },
                    "tokenLogoUrl": {
                        "type": [
                            "string",
                            "null"
                        ]
                    }
                }
            }
        }
    }
}"##
);

json_schema!(
    ConfigureTransferResponse,
    r##"{
    "type": "object",
    "description": "Mesh's ConfigureTransferResponse: every crypto position held, eligible ones first.",
    "properties": {
        "status": {
            "type": "string",
            "enum": [
                "succeeded"
            ]
        },
        "holdings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "symbol": {
                        "type": "string"
                    },
                    "name": {
                        "type": "string"
                    },
                    "availableBalance": {
                        "type": "number"
                    },
                    "availableBalanceInFiat": {
                        "type": [
                            "number",
                            "null"
                        ]
                    },
                    "unitPrice": {
                        "type": [
                            "number",
                            "null"
                        ],
                        "description": "Extension: USD per unit"
                    },
                    "eligibleForTransfer": {
                        "type": "boolean"
                    },
                    "ineligibilityReason": {
                        "type": [
                            "string",
                            "null"
                        ],
                        "enum": [
                            "symbolDoesNotMatch",
                            "notSupportedForTransferByTarget",
                            "notSupportedForTransferBySource",
                            "noEligibleNetworks",
                            "amountNotSufficient",
                            "noPrice",
                            null
                        ]
                    },
                    "eligibleForTransferWithFunding": {
                        "type": "boolean"
                    },
                    "networks": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {
                                    "type": "string",
                                    "format": "uuid"
                                },
                                "name": {
                                    "type": "string"
                                },
                                "toAddress": {
                                    "type": [
                                        "string",
                                        "null"
                                    ]
                                },
                                "addressTag": {
                                    "type": [
                                        "string",
                                        "null"
                                    ]
                                },
                                "minimumAmount": {
                                    "type": [
                                        "number",
                                        "null"
                                    ]
                                },
                                "fee": {
                                    "type": [
                                        "number",
                                        "null"
                                    ]
                                },
                                "feeCurrency": {
                                    "type": [
                                        "string",
                                        "null"
                                    ]
                                },
                                "amount": {
                                    "type": [
                                        "number",
                                        "null"
                                    ]
                                },
                                "eligibleForTransfer": {
                                    "type": "boolean"
                                },
                                "ineligibilityReason": {
                                    "type": [
                                        "string",
                                        "null"
                                    ],
                                    "enum": [
                                        "amountNotSufficient",
                                        null
                                    ]
                                }
                            }
                        }
                    }
                }
            }
        },
        "amountInFiat": {
            "type": [
                "number",
                "null"
            ]
        },
        "fiatCurrency": {
            "type": "string",
            "enum": [
                "USD"
            ]
        },
        "minimumTransferAmountInFiat": {
            "type": [
                "number",
                "null"
            ]
        },
        "maximumTransferAmountInFiat": {
            "type": [
                "number",
                "null"
            ]
        },
        "supportedFiatCurrencies": {
            "type": "array",
            "items": {
                "type": "string"
            }
        },
        "transferBalanceFundingAvailability": {
            "type": "null"
        }
    }
}"##
);

json_schema!(
    ManagedTransferModel,
    r##"{
    "type": "object",
    "description": "Mesh's TransferModel for a transfer made through linkvault.",
    "required": [
        "id"
    ],
    "properties": {
        "id": {
            "type": "string",
            "format": "uuid",
            "description": "linkvault's id of the transfer: the previewId it was executed from (Mesh's TransferId in webhooks)."
        },
        "clientTransactionId": {
            "type": [
                "string",
                "null"
            ]
        },
        "institutionTransactionId": {
            "type": [
                "string",
                "null"
            ],
            "description": "The integration's id of the transfer (execute's executeTransferResult.transferId)."
        },
        "status": {
            "type": "string",
            "enum": [
                "pending",
                "succeeded",
                "failed"
            ]
        },
        "amountInFiat": {
            "type": "number"
        },
        "amountToReceiveInFiat": {
            "type": "number"
        },
        "amountInFiatCurrencyCode": {
            "type": "string",
            "enum": [
                "USD"
            ]
        },
        "amount": {
            "type": "number",
            "description": "What the destination receives, in symbol."
        },
        "amountToReceive": {
            "type": "number"
        },
        "requestedTransferAmount": {
            "type": "number"
        },
        "sourceAmount": {
            "type": "number",
            "description": "What left the account (amount plus a fee taken in the symbol)."
        },
        "destinationAmount": {
            "type": "number"
        },
        "destinationAmountInFiat": {
            "type": "number"
        },
        "symbol": {
            "type": "string"
        },
        "tokenAddress": {
            "type": "null"
        },
        "networkId": {
            "type": "string",
            "format": "uuid"
        },
        "networkName": {
            "type": [
                "string",
                "null"
            ]
        },
        "networkLogoUrl": {
            "type": "null"
        },
        "createdTimestamp": {
            "type": "integer",
            "description": "Unix seconds."
        },
        "executedTimestamp": {
            "type": "integer",
            "description": "Unix seconds."
        },
        "hash": {
            "type": [
                "string",
                "null"
            ],
            "description": "Known once the follower saw the transfer succeed."
        },
        "clientId": {
            "type": "string",
            "format": "uuid"
        },
        "userId": {
            "type": "string"
        },
        "destinationAddress": {
            "type": "string"
        },
        "gasFee": {
            "type": "null"
        },
        "withdrawalFee": {
            "type": [
                "object",
                "null"
            ],
            "properties": {
                "fee": {
                    "type": "number"
                },
                "feeCurrency": {
                    "type": [
                        "string",
                        "null"
                    ]
                },
                "feeInFiat": {
                    "type": "number"
                },
                "feeInTransferCurrency": {
                    "type": "number"
                }
            }
        },
        "processingFee": {
            "type": "null"
        },
        "totalFeesAmountInFiat": {
            "type": "number"
        },
        "totalTransactionAmountInFiat": {
            "type": "number"
        },
        "unitPrice": {
            "type": "number"
        },
        "isSmartFundingTransfer": {
            "type": "boolean",
            "enum": [
                false
            ]
        },
        "isBridgingTransfer": {
            "type": "boolean",
            "enum": [
                false
            ]
        },
        "fundingMethods": {
            "type": "array",
            "items": {
                "type": "string"
            },
            "maxItems": 0,
            "description": "Always empty: linkvault funds no transfer."
        },
        "from": {
            "type": [
                "object",
                "null"
            ],
            "properties": {
                "id": {
                    "type": "string",
                    "format": "uuid"
                },
                "type": {
                    "type": "string"
                },
                "name": {
                    "type": "string"
                },
                "logoUrl": {
                    "type": [
                        "string",
                        "null"
                    ]
                }
            }
        }
    }
}"##
);

json_schema!(
    ManagedTransferPage,
    r##"{
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "$ref": "#/components/schemas/ManagedTransferModel"
            }
        },
        "total": {
            "type": "integer",
            "description": "All transfers matching the filters."
        },
        "hasMorePages": {
            "type": "boolean"
        }
    }
}"##
);

json_schema!(
    ManagedIntegrationsModel,
    r##"{
    "type": "object",
    "properties": {
        "integrations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {
                        "type": "string",
                        "format": "uuid"
                    },
                    "type": {
                        "type": "string"
                    },
                    "name": {
                        "type": "string"
                    },
                    "networks": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {
                                    "type": "string",
                                    "format": "uuid"
                                },
                                "name": {
                                    "type": "string"
                                },
                                "chainId": {
                                    "type": "string"
                                },
                                "supportedTokens": {
                                    "type": "array",
                                    "items": {
                                        "type": "string"
                                    }
                                }
                            }
                        }
                    },
                    "supportsOutgoingTransfers": {
                        "type": "boolean",
                        "description": "The integration has an account API that sends."
                    },
                    "supportsIncomingTransfers": {
                        "type": "boolean",
                        "description": "The integration has an account API (deposit addresses)."
                    }
                }
            }
        }
    }
}"##
);

json_schema!(
    ScopeName,
    r##"{
    "type": "string",
    "enum": [
        "read",
        "write"
    ],
    "description": "The scope of the API key a connection was made with"
}"##
);

json_schema!(
    ConnectionState,
    r##"{
    "type": "string",
    "enum": [
        "active",
        "reauthRequired"
    ]
}"##
);

json_schema!(
    AccountToken,
    r##"{
    "type": "object",
    "properties": {
        "account": {
            "type": "object",
            "properties": {
                "accountId": {
                    "type": "string"
                },
                "accountName": {
                    "type": "string"
                },
                "meshAccountId": {
                    "type": "string"
                },
                "isReconnected": {
                    "type": "boolean"
                }
            }
        },
        "accessToken": {
            "type": "string",
            "description": "managed mode: equals tokenId; client-managed mode: a linkvault access token (lva_…)"
        },
        "tokenId": {
            "type": "string",
            "format": "uuid",
            "description": "managed mode only"
        },
        "refreshToken": {
            "type": "string",
            "description": "client-managed mode only: a linkvault refresh token (lvr_…) for POST /api/v1/token/refresh"
        }
    }
}"##
);

json_schema!(
    WebhookSet,
    r##"{
    "type": "object",
    "properties": {
        "url": {
            "type": "string"
        },
        "secret": {
            "type": "string",
            "description": "whsec_… (Standard Webhooks; for the mesh format the whole text is the HMAC key)"
        },
        "format": {
            "type": "string",
            "enum": [
                "standard",
                "mesh"
            ]
        }
    }
}"##
);

json_schema!(
    WebhookEndpoint,
    r##"{
    "type": "object",
    "properties": {
        "url": {
            "type": [
                "string",
                "null"
            ]
        },
        "format": {
            "type": [
                "string",
                "null"
            ],
            "enum": [
                "standard",
                "mesh",
                null
            ]
        }
    }
}"##
);

json_schema!(impl crate::routes::integrations::IntegrationList as IntegrationList, r##"{
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {
                        "type": "string",
                        "format": "uuid",
                        "description": "Mesh's id where Mesh publishes one (coinbase 47624467-e52e-4938-a41a-7926b6c27acf), else derived from the type; the catalog file can set it"
                    },
                    "name": {
                        "type": "string"
                    },
                    "type": {
                        "type": "string"
                    },
                    "categories": {
                        "type": "array",
                        "items": {
                            "type": "string"
                        }
                    },
                    "style": {
                        "type": [
                            "object",
                            "null"
                        ],
                        "description": "Mesh's brand colours, six hex digits without #; null when the integration has none",
                        "properties": {
                            "fieldActiveLight": {
                                "type": [
                                    "string",
                                    "null"
                                ],
                                "pattern": "^[0-9A-F]{6}$"
                            },
                            "buttonPrimaryLight": {
                                "type": [
                                    "string",
                                    "null"
                                ],
                                "pattern": "^[0-9A-F]{6}$"
                            },
                            "buttonHoverLight": {
                                "type": [
                                    "string",
                                    "null"
                                ],
                                "pattern": "^[0-9A-F]{6}$"
                            },
                            "buttonTextLight": {
                                "type": [
                                    "string",
                                    "null"
                                ],
                                "pattern": "^[0-9A-F]{6}$"
                            },
                            "buttonTextHoverLight": {
                                "type": [
                                    "string",
                                    "null"
                                ],
                                "pattern": "^[0-9A-F]{6}$"
                            },
                            "fieldActiveDark": {
                                "type": [
                                    "string",
                                    "null"
                                ],
                                "pattern": "^[0-9A-F]{6}$"
                            },
                            "buttonPrimaryDark": {
                                "type": [
                                    "string",
                                    "null"
                                ],
                                "pattern": "^[0-9A-F]{6}$"
                            },
                            "buttonHoverDark": {
                                "type": [
                                    "string",
                                    "null"
                                ],
                                "pattern": "^[0-9A-F]{6}$"
                            },
                            "buttonTextDark": {
                                "type": [
                                    "string",
                                    "null"
                                ],
                                "pattern": "^[0-9A-F]{6}$"
                            },
                            "buttonTextHoverDark": {
                                "type": [
                                    "string",
                                    "null"
                                ],
                                "pattern": "^[0-9A-F]{6}$"
                            }
                        }
                    },
                    "logo": {
                        "type": "object"
                    },
                    "cryptoTransfersSupported": {
                        "type": "boolean"
                    },
                    "supportedFeatures": {
                        "type": "array",
                        "items": {
                            "type": "string"
                        }
                    },
                    "authenticationSchemeType": {
                        "type": "string",
                        "enum": [
                            "oAuth",
                            "usernamePassword",
                            "apiKey"
                        ]
                    },
                    "isConfigured": {
                        "type": "boolean"
                    }
                }
            }
        }
    }
}"##);

json_schema!(WebhookFormatName, r##"{"type": "string", "enum": ["standard", "mesh"]}"##);

json_schema!(
    SignInOutcomeName,
    r##"{"type": "string", "enum": ["succeeded", "mfaRequired", "failed", "challengeFailed"]}"##
);

/// The query parameters of `GET /api/v1/transfers/managed/mesh`, which the handler reads by hand (Mesh's names
/// matched case-insensitively, lists repeated or comma-separated): `transfer_list::PARAMETERS` names the same
/// set (tested below).
#[derive(Debug)]
pub(crate) struct MeshTransferQuery;

impl MeshTransferQuery {
    fn literal() -> serde_json::Value {
        serde_json::from_str(
            r##"[
            {
                "name": "Count",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100,
                    "default": 10
                },
                "description": "Items per page (1-100, default 10)."
            },
            {
                "name": "Offset",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "integer",
                    "minimum": 0
                },
                "description": "Items to skip."
            },
            {
                "name": "Id",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "string",
                    "format": "uuid"
                },
                "description": "linkvault's id of the transfer (the `id` of an item; the previewId it was executed from)."
            },
            {
                "name": "ClientTransactionId",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "string",
                    "maxLength": 128
                },
                "description": "The transactionId the preview was made with."
            },
            {
                "name": "UserId",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "string",
                    "maxLength": 50
                },
                "description": "The end user whose connection sent."
            },
            {
                "name": "IntegrationIds",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "string",
                        "format": "uuid"
                    },
                    "maxItems": 100
                },
                "description": "Integration ids (as in GET /api/v1/integrations); repeat the parameter or separate with commas."
            },
            {
                "name": "Statuses",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "string",
                        "enum": [
                            "pending",
                            "succeeded",
                            "failed"
                        ]
                    },
                    "maxItems": 5
                },
                "description": "Mesh's TransferStatus values, case-insensitive."
            },
            {
                "name": "FromTimestamp",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "integer",
                    "format": "int64"
                },
                "description": "Created at or after (Unix seconds)."
            },
            {
                "name": "ToTimestamp",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "integer",
                    "format": "int64"
                },
                "description": "Created at or before (Unix seconds)."
            },
            {
                "name": "MinAmountInFiat",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "number"
                },
                "description": "At least this USD value."
            },
            {
                "name": "MaxAmountInFiat",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "number"
                },
                "description": "At most this USD value."
            },
            {
                "name": "OrderBy",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "string",
                    "enum": [
                        "id",
                        "clientTransferId",
                        "userId",
                        "fromType",
                        "amountInFiat",
                        "status",
                        "createdTimestamp",
                        "symbol",
                        "networkName"
                    ],
                    "default": "createdTimestamp"
                },
                "description": "Sort key (networkName sorts by network id)."
            },
            {
                "name": "Hash",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "string",
                    "maxLength": 256
                },
                "description": "On-chain transaction hash."
            },
            {
                "name": "SubClientId",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "string",
                    "format": "uuid"
                },
                "description": "Accepted for compatibility; linkvault has no sub-clients, so any value matches nothing."
            },
            {
                "name": "DescendingOrder",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "boolean",
                    "default": false
                },
                "description": "Newest (or largest) first."
            },
            {
                "name": "IsSandBox",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "boolean"
                },
                "description": "Accepted for compatibility and ignored."
            },
            {
                "name": "IncludeRefundInformation",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "boolean"
                },
                "description": "Accepted for compatibility and ignored (linkvault makes no refunds)."
            }
        ]"##,
        )
        .unwrap_or_default()
    }
}

impl utoipa::IntoParams for MeshTransferQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        serde_json::from_value(Self::literal()).unwrap_or_default()
    }
}

json_schema!(
    TransferDestination,
    r##"{
    "type": "object",
    "required": [
        "networkId",
        "symbol"
    ],
    "properties": {
        "networkId": {
            "type": "string",
            "format": "uuid"
        },
        "symbol": {
            "type": "string",
            "maxLength": 20
        },
        "address": {
            "type": [
                "string",
                "null"
            ],
            "maxLength": 128
        },
        "addressTag": {
            "type": [
                "string",
                "null"
            ],
            "maxLength": 128
        },
        "amount": {
            "type": [
                "number",
                "null"
            ],
            "exclusiveMinimum": 0
        }
    }
}"##
);

json_schema!(FiatCurrency, r##"{"type": "string", "enum": ["USD"]}"##);

json_schema!(
    Health,
    r##"{
    "type": "object",
    "required": ["status", "database"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "database": {"type": "string", "enum": ["sqlite", "postgres"]}
    }
}"##
);

/// Every literal of this file with the schema read from it.
#[cfg(test)]
pub(crate) fn literals() -> Vec<(serde_json::Value, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)> {
    use utoipa::PartialSchema as _;
    vec![
        (Health::literal(), Health::schema()),
        (TransferDestination::literal(), TransferDestination::schema()),
        (FiatCurrency::literal(), FiatCurrency::schema()),
        (WebhookFormatName::literal(), WebhookFormatName::schema()),
        (SignInOutcomeName::literal(), SignInOutcomeName::schema()),
        (ScopeName::literal(), ScopeName::schema()),
        (ConnectionState::literal(), ConnectionState::schema()),
        (AccountToken::literal(), AccountToken::schema()),
        (WebhookSet::literal(), WebhookSet::schema()),
        (WebhookEndpoint::literal(), WebhookEndpoint::schema()),
        (
            crate::routes::integrations::IntegrationList::literal(),
            crate::routes::integrations::IntegrationList::schema(),
        ),
        (AuthenticationSchemes::literal(), AuthenticationSchemes::schema()),
        (B2BBrokerRefreshTokenResponse::literal(), B2BBrokerRefreshTokenResponse::schema()),
        (TransferFee::literal(), TransferFee::schema()),
        (PreviewTransferResponse::literal(), PreviewTransferResponse::schema()),
        (ExecuteTransferResponse::literal(), ExecuteTransferResponse::schema()),
        (HoldingsModel::literal(), HoldingsModel::schema()),
        (BalanceModel::literal(), BalanceModel::schema()),
        (HoldingsValueModel::literal(), HoldingsValueModel::schema()),
        (PortfolioModel::literal(), PortfolioModel::schema()),
        (FiatPortfolioModel::literal(), FiatPortfolioModel::schema()),
        (TransfersListModel::literal(), TransfersListModel::schema()),
        (DepositAddressModel::literal(), DepositAddressModel::schema()),
        (NetworksModel::literal(), NetworksModel::schema()),
        (TokensModel::literal(), TokensModel::schema()),
        (ConfigureTransferResponse::literal(), ConfigureTransferResponse::schema()),
        (ManagedTransferModel::literal(), ManagedTransferModel::schema()),
        (ManagedTransferPage::literal(), ManagedTransferPage::schema()),
        (ManagedIntegrationsModel::literal(), ManagedIntegrationsModel::schema()),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

    use super::*;
    use utoipa::IntoParams as _;

    #[test]
    fn the_mesh_transfer_parameters_are_the_ones_the_handler_reads() {
        let params = MeshTransferQuery::into_params(|| None);
        assert_eq!(serde_json::to_value(&params).unwrap(), MeshTransferQuery::literal());
        let documented: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(documented, crate::routes::transfer_list::PARAMETERS);
    }
}
